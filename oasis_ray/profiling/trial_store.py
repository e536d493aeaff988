"""Finished trials on disk, one JSON file each, so a sweep can stop anywhere and resume.

Each outcome is written the moment its trial ends, to a temporary name and
then renamed into place: a sweep killed mid-write leaves either the whole
file or none, never a torn one that would read as finished. A file that
still cannot be read (edited by hand, written by an older schema) is
reported and its trial run again rather than trusted.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from oasis_ray.profiling.sweep_plan import Trial
from oasis_ray.profiling.trial_outcome import TrialOutcome

TRIALS_DIR = "trials"
FILE_MODE = 0o644


class TrialStore:
    def __init__(self, out_dir: Path) -> None:
        self.directory = out_dir / TRIALS_DIR
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, trial_id: str) -> Path:
        return self.directory / f"{trial_id}.json"

    def save(self, outcome: TrialOutcome) -> Path:
        target = self.path(outcome.row.trial_id)
        descriptor, staging = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".tmp", dir=self.directory)
        try:
            os.chmod(staging, FILE_MODE)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(outcome.model_dump_json(indent=1))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, target)
        finally:
            Path(staging).unlink(missing_ok=True)
        return target

    def load(self, trial_ids: list[str]) -> tuple[dict[str, TrialOutcome], list[str]]:
        """The stored outcomes of these trials, and one line per file that exists but cannot be trusted."""
        outcomes: dict[str, TrialOutcome] = {}
        unreadable: list[str] = []
        for trial_id in trial_ids:
            path = self.path(trial_id)
            if not path.is_file():
                continue
            try:
                outcome = TrialOutcome.model_validate_json(path.read_text())
            except (OSError, ValidationError) as error:
                unreadable.append(f"{path}: {str(error).splitlines()[0]}")
                continue
            if outcome.row.trial_id != trial_id:
                unreadable.append(f"{path}: holds trial {outcome.row.trial_id}")
                continue
            outcomes[trial_id] = outcome
        return outcomes, unreadable


def unfinished(trials: list[Trial], stored: dict[str, TrialOutcome]) -> list[Trial]:
    """The trials a run still owes: those never stored, and those stored as failed.

    A failed trial is retried because its failure may have been the node's
    (lost, preempted) rather than the trial's; a measured one is never re-run.
    """
    return [t for t in trials if t.trial_id not in stored or stored[t.trial_id].row.status != "ok"]
