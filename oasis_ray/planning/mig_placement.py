"""Valid MIG layouts of A100 and H100 GPUs, and packing slices onto physical GPUs.

A MIG slice cannot start anywhere. Each profile occupies a fixed run of the
GPU's eight memory slices, starting only at the positions NVIDIA allows
(`nvidia-smi mig -lgipp`, NVIDIA's MIG user guide), and the compute slices of
the instances on one GPU may not exceed seven. So two 3g slices share an A100
but a 4g and two 2g do not, although 4 + 2 + 2 compute slices would "fit" by
counting alone. A plan that ignored this would promise layouts the driver
refuses.

Packing is first fit over GPUs grouped by occupancy: a GPU's state is an
8-bit mask of used memory slices, so there are at most 256 states and placing
a slice looks at states, not at every GPU, which keeps a 1,000-GPU plan fast.
Fed largest slices first, this is first-fit decreasing.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field

from oasis_ray.mig_geometry import COMPUTE_SLICES, MEMORY_SLICES, MigProfile, mig_profile

@dataclass(frozen=True)
class SlicePlacement:
    gpu_index: int
    profile: str
    start_slot: int
    owner: str


@dataclass
class GpuPacker:
    """Hands out whole GPUs and MIG slices of one pool of `count` identical GPUs, never the same slot twice.

    Whole GPUs are taken from GPUs nothing is placed on yet (a GPU serving a
    full-GPU replica runs with MIG off). `geometry` None means the GPUs cannot
    be partitioned, so every slice request is refused. Partly used GPUs are
    grouped by (memory mask, compute slices used): GPUs in one group accept
    exactly the same slices, so a placement tests each group once.
    """

    count: int
    geometry: str | None
    _next_empty: int = 0
    _partial: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    _mig_gpus: int = 0
    placements: list[SlicePlacement] = field(default_factory=list)
    whole: dict[int, str] = field(default_factory=dict)

    @property
    def free_whole(self) -> int:
        return self.count - self._next_empty

    @property
    def mig_gpus(self) -> int:
        return self._mig_gpus

    def take_whole(self, owner: str) -> int | None:
        if self.free_whole <= 0:
            return None
        index = self._next_empty
        self._next_empty += 1
        self.whole[index] = owner
        return index

    def place_slice(self, profile_name: str, owner: str) -> SlicePlacement | None:
        """First fit: the lowest-numbered GPU with a free allowed start slot, else a fresh GPU, else None."""
        if self.geometry is None:
            return None
        profile = mig_profile(self.geometry, profile_name)
        best: tuple[int, tuple[int, int], int] | None = None
        for state, indices in self._partial.items():
            mask, compute = state
            start = _free_start(profile, mask)
            if start is not None and compute + profile.compute_slices <= COMPUTE_SLICES:
                if best is None or indices[0] < best[0]:
                    best = (indices[0], state, start)
        if best is not None:
            index, state, start = best
            self._partial[state].pop(0)
            if not self._partial[state]:
                del self._partial[state]
            return self._occupy(index, state, profile, start, owner)
        if self.free_whole <= 0:
            return None
        index = self._next_empty
        self._next_empty += 1
        self._mig_gpus += 1
        return self._occupy(index, (0, 0), profile, profile.start_slots[0], owner)

    def _occupy(
        self, index: int, state: tuple[int, int], profile: MigProfile, start: int, owner: str
    ) -> SlicePlacement:
        mask = state[0] | profile.mask_at(start)
        compute = state[1] + profile.compute_slices
        if mask != (1 << MEMORY_SLICES) - 1 and compute < COMPUTE_SLICES:
            bisect.insort(self._partial.setdefault((mask, compute), []), index)
        placement = SlicePlacement(gpu_index=index, profile=profile.name, start_slot=start, owner=owner)
        self.placements.append(placement)
        return placement


def gpus_for_slices(geometry: str, counts: Mapping[str, int]) -> int:
    """How many GPUs first-fit decreasing needs for these slices (profile -> count) at valid placements.

    Largest memory footprint first, then most compute: what the planner
    does, so a fleet the simulator holds is one the planner could build.
    """
    slices = [name for name, count in counts.items() for _ in range(count)]
    order = sorted(slices, key=lambda name: (-mig_profile(geometry, name).memory_slices,
                                              -mig_profile(geometry, name).compute_slices, name))
    packer = GpuPacker(count=len(order), geometry=geometry)
    for name in order:
        packer.place_slice(name, owner=name)
    return packer.mig_gpus


def _free_start(profile: MigProfile, mask: int) -> int | None:
    for start in profile.start_slots:
        if not mask & profile.mask_at(start):
            return start
    return None


def placement_problems(geometry: str, placements: list[SlicePlacement]) -> list[str]:
    """Why a set of placements would be refused by the driver; empty when every GPU's layout is valid.

    Independent of the packer, so tests and callers can check any layout.
    """
    problems: list[str] = []
    by_gpu: dict[int, list[SlicePlacement]] = {}
    for placement in placements:
        by_gpu.setdefault(placement.gpu_index, []).append(placement)
    for index, on_gpu in sorted(by_gpu.items()):
        used = 0
        compute = 0
        for placement in on_gpu:
            profile = mig_profile(geometry, placement.profile)
            if placement.start_slot not in profile.start_slots:
                problems.append(
                    f"gpu {index}: {profile.name} may start at {list(profile.start_slots)}, not {placement.start_slot}"
                )
                continue
            mask = profile.mask_at(placement.start_slot)
            if used & mask:
                problems.append(f"gpu {index}: {profile.name} at slot {placement.start_slot} overlaps another slice")
            used |= mask
            compute += profile.compute_slices
        if compute > COMPUTE_SLICES:
            problems.append(f"gpu {index}: {compute} compute slices used, at most {COMPUTE_SLICES}")
    return problems
