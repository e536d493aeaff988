"""tests/gpu must run where only numpy, pandas, pydantic, nvidia-ml-py and pytest are installed (scripts/gpu_check.sh).

Checked on the import graph itself, in a fresh interpreter, so modules other
tests loaded cannot hide a dependency: importing every tests/gpu module loads
none of the packages a GPU-only machine lacks.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

GPU_TESTS = Path(__file__).parent / "gpu"
ABSENT_ON_A_GPU_CHECK_MACHINE = (
    "ray", "vllm", "torch", "transformers", "tokenizers", "pyarrow", "yaml", "opentelemetry", "prometheus_client"
)


def test_gpu_tests_import_nothing_beyond_the_gpu_check_venv() -> None:
    modules = [f"tests.gpu.{m.name}" for m in pkgutil.iter_modules([str(GPU_TESTS)])]
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(" + repr(ABSENT_ON_A_GPU_CHECK_MACHINE) + ")))\n"
    )
    root = GPU_TESTS.parents[1]
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=root
    ).stdout.strip()
    assert loaded == "[]", f"tests/gpu pulled in {loaded}"
    assert {"tests.gpu.conftest", "tests.gpu.test_nvml_gpu", "tests.gpu.test_power_limit_gpu"} <= set(modules)
