"""Which Ray cluster a command means: the one named, else the one running on this machine, else none.

Ray's own discovery (`ray.init(address="auto")`) picks an arbitrary cluster
when several run, and a stale address file left by a cluster that is gone
makes it wait and then fail. Commands here resolve the address first, with
the same sources in the same order (--address, RAY_ADDRESS, Ray's address
file, running GCS processes), but refuse to guess between several clusters
and skip an address file nothing answers at, saying so.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

# An address that asks for a fresh cluster, as `ray.init(address="local")` reads it.
LOCAL = "local"
_PROBE_TIMEOUT_S = 2.0


class ClusterChoiceError(RuntimeError):
    """The address given cannot be used, or several clusters run and none was named."""


@dataclass(frozen=True)
class ClusterRef:
    address: str
    """GCS host:port, or a dashboard http(s):// URL (jobs only)."""
    found_by: str

    @property
    def is_dashboard_url(self) -> bool:
        return self.address.startswith(("http://", "https://"))

    def describe(self) -> str:
        return f"{self.address} (from {self.found_by})"


@dataclass(frozen=True)
class Discovery:
    cluster: ClusterRef | None
    """None: no cluster runs here (or "local" was asked for); the command starts its own."""
    notes: list[str] = field(default_factory=list)


def find_cluster(address: str | None = None) -> Discovery:
    """`address` is the command's --address; None looks for one as described above."""
    named = address or os.environ.get("RAY_ADDRESS") or None
    if named is not None:
        source = "--address" if address else "RAY_ADDRESS"
        if named == LOCAL:
            return Discovery(None, [f"{source} is '{LOCAL}': a new local Ray instance is started"])
        if named == "auto":
            return _discover()
        if not named.startswith(("http://", "https://")) and not _answers(named):
            raise ClusterChoiceError(f"nothing answers at {named} (from {source}); is that Ray cluster running?")
        return Discovery(ClusterRef(named, source))
    return _discover()


def _discover() -> Discovery:
    from ray._common.utils import get_ray_address_file
    from ray._private.services import find_gcs_addresses

    notes = []
    address_file = Path(get_ray_address_file(None))
    if address_file.exists():
        recorded = address_file.read_text().strip()
        if recorded and _answers(recorded):
            return Discovery(ClusterRef(recorded, f"Ray's address file {address_file}"))
        notes.append(f"ignored {address_file}: nothing answers at {recorded or '(empty)'}, a cluster that is gone")
    running = sorted(find_gcs_addresses())
    if len(running) > 1:
        raise ClusterChoiceError(
            f"{len(running)} Ray clusters run on this machine ({', '.join(running)}); name one with --address"
        )
    if running:
        return Discovery(ClusterRef(running[0], "the Ray cluster running on this machine"), notes)
    return Discovery(None, [*notes, "no Ray cluster runs on this machine"])


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=_PROBE_TIMEOUT_S):
            return True
    except (OSError, ValueError):
        return False
