"""Which NVML device a replica's engine runs on, from the ids Ray gave it.

Ray hands a worker its GPUs as entries of CUDA_VISIBLE_DEVICES (also what
`ray.get_gpu_ids()` returns). An entry is either a UUID (`GPU-...`, or `MIG-...`
where a MIG profile's raylet was started with slice UUIDs, see
oasis_ray.telemetry.mig) or an integer. A UUID is matched against NVML's
devices exactly. An integer is taken as the NVML index, the convention vLLM
itself uses to find its device in NVML (it runs CUDA in PCI bus order), so
the GPU whose clock is set is the one the engine computes on.

A MIG slice maps to its parent GPU: clocks and power limits are the board's,
shared with every other slice on it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from oasis_ray.telemetry.nvml import GpuSample


class DeviceTarget(BaseModel):
    """A physical GPU a replica holds, and the MIG slice it holds on it (None: the whole GPU)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    visible_id: str
    index: int
    uuid: str
    name: str
    mig_uuid: str | None = None

    @property
    def is_mig_slice(self) -> bool:
        return self.mig_uuid is not None

    def label(self) -> str:
        """`GPU 0 (NVIDIA A100-SXM4-80GB, GPU-1234)`, with the slice where there is one."""
        slice_note = f", MIG slice {self.mig_uuid}" if self.mig_uuid else ""
        return f"GPU {self.index} ({self.name}, {self.uuid}{slice_note})"


def resolve_visible(visible_ids: list[str], gpus: list[GpuSample]) -> list[DeviceTarget]:
    """The NVML devices behind the visible ids, in their order; an id NVML does not list raises, naming it."""
    by_uuid = {gpu.uuid: gpu for gpu in gpus}
    parent_of = {mig.uuid: gpu for gpu in gpus for mig in gpu.mig_devices}
    by_index = {gpu.index: gpu for gpu in gpus}
    targets = []
    for raw in visible_ids:
        visible = raw.strip()
        mig_uuid = None
        if visible.isdigit():
            gpu = by_index.get(int(visible))
        elif visible in parent_of:
            gpu, mig_uuid = parent_of[visible], visible
        else:
            gpu = by_uuid.get(visible)
        if gpu is None:
            known = sorted(by_uuid) + sorted(parent_of)
            raise ValueError(f"visible device {visible!r}: NVML lists no such GPU or MIG slice (known: {known})")
        targets.append(DeviceTarget(visible_id=visible, index=gpu.index, uuid=gpu.uuid, name=gpu.name,
                                    mig_uuid=mig_uuid))
    return targets
