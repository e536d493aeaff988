"""The architecture's one-way data flow, checked on the import graph itself.

The scaling core is pure decision code: the live policy and the simulator
feed it the same typed objects, and it must not reach back for the table's
file format (profiling), the app's config or pandas. Imported in a fresh
interpreter, so modules other tests loaded cannot hide a dependency.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import oasis_ray.scaling

FORBIDDEN = ("pandas", "oasis_ray.config", "oasis_ray.profiling", "oasis_ray.costs", "oasis_ray.planning", "ray")


def test_the_scaling_core_imports_no_table_format_config_pandas_or_ray() -> None:
    modules = [f"oasis_ray.scaling.{m.name}" for m in pkgutil.iter_modules(oasis_ray.scaling.__path__)]
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r})))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"oasis_ray.scaling pulled in {loaded}"
    assert {"oasis_ray.scaling.core", "oasis_ray.scaling.traffic"} <= set(modules)
