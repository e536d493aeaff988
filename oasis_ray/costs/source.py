"""The cost table as the live autoscaler reads it: reloaded when the file changes, never lost on a bad read.

A table that cannot be read at startup stops startup; one that turns bad at
run time (a half-copied file, a wrong schema) keeps the last good capacities
and says so loudly, because scaling on no table would be worse than scaling
on the previous one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from oasis_ray.config import OasisAppConfig
from oasis_ray.costs.intent_config import apply_intents
from oasis_ray.costs.live import live_route_capacities
from oasis_ray.costs.table import CostTable
from oasis_ray.profiling.hct import load_hct
from oasis_ray.scaling.shapes import RouteCapacity

logger = logging.getLogger(__name__)


def _fingerprint(path: Path) -> tuple[float, ...]:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return tuple(os.stat(f).st_mtime for f in files if f.is_file())


def read_cost_table(config: OasisAppConfig) -> CostTable | None:
    """The app's cost table (hct_path), read once when the app is built; None when it names none."""
    path = config.table_path()
    return CostTable(load_hct(path)) if path is not None else None


class CapacitySource:
    def __init__(self, config: OasisAppConfig):
        """The routes are configured for their intents once, from the table as it is now, as the app builder
        did: a later table may rank configurations differently, but the replicas run the one deployed."""
        if config.autoscaling is None:
            raise ValueError("autoscaling: not configured")
        self._path = config.autoscaling.table_path()
        self._seen = _fingerprint(self._path)
        self._table = CostTable(load_hct(self._path))
        self._config, _ = apply_intents(config, self._table)
        self._capacities = live_route_capacities(self._config, self._table)

    @property
    def slo_p95_e2e_s(self) -> float:
        """The SLO the table was profiled under: what its MSRRs promise, and what the status view checks."""
        return self._table.slo_p95_e2e_s

    def capacities(self) -> tuple[RouteCapacity, ...]:
        try:
            seen = _fingerprint(self._path)
            if seen != self._seen:
                self._seen = seen
                table = CostTable(load_hct(self._path))
                self._capacities = live_route_capacities(self._config, table)
                self._table = table
                logger.info("oasis autoscaling: reloaded the cost table from %s", self._path)
        except (OSError, ValueError) as error:
            logger.error("oasis autoscaling: cannot read the cost table %s (%s); keeping the last good one",
                         self._path, error)
        return self._capacities
