"""The MIG geometry of A100 and H100 GPUs: each profile's compute and memory slices and where it may start.

Hardware facts (`nvidia-smi mig -lgipp`, NVIDIA's MIG user guide), shared by
the GPU model (what a slice can do), the planner's inventory (which slices a
pool offers) and the placement packer (oasis_ray.planning.mig_placement).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MEMORY_SLICES = 8
COMPUTE_SLICES = 7

MigGeometryName = Literal["A100-40GB", "A100-80GB", "H100-80GB"]


@dataclass(frozen=True)
class MigProfile:
    """One GPU-instance profile: its compute share and where on the memory slices it may sit."""

    name: str
    compute_slices: int
    memory_slices: int
    start_slots: tuple[int, ...]

    def mask_at(self, start: int) -> int:
        return ((1 << self.memory_slices) - 1) << start


def _profiles(small: str, small_wide: str, two: str, three: str, four: str, seven: str) -> dict[str, MigProfile]:
    """The A100/H100 placement table; the generations differ only in memory per slice, hence in names."""
    table = (
        MigProfile(small, 1, 1, (0, 1, 2, 3, 4, 5, 6)),
        MigProfile(small_wide, 1, 2, (0, 2, 4, 6)),
        MigProfile(two, 2, 2, (0, 2, 4)),
        MigProfile(three, 3, 4, (0, 4)),
        MigProfile(four, 4, 4, (0,)),
        MigProfile(seven, 7, 8, (0,)),
    )
    return {profile.name: profile for profile in table}


MIG_GEOMETRIES: dict[str, dict[str, MigProfile]] = {
    "A100-40GB": _profiles("1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
    "A100-80GB": _profiles("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
    "H100-80GB": _profiles("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
}


def mig_profile(geometry: str, name: str) -> MigProfile:
    profiles = MIG_GEOMETRIES[geometry]
    if name not in profiles:
        raise ValueError(f"mig_profile: '{name}' is not a MIG profile of {geometry} (known: {sorted(profiles)})")
    return profiles[name]
