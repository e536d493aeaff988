"""Print the `ray start` lines that give each MIG profile on this node its own raylet.

Ray schedules whole "GPUs" and cannot tell a 1g.10gb slice from a 7g.80gb one,
so each profile gets a raylet that sees only its slices (CUDA_VISIBLE_DEVICES)
and advertises them as a named resource that deployments can request. This
command only reads the MIG layout; it never creates or changes MIG instances.

    python -m oasis_ray.telemetry.mig --address 10.0.0.1:6379

Exit status: 0 with the lines printed, or with a plain message where MIG is off
on every GPU; 1 where NVML is unavailable.
"""

from __future__ import annotations

import argparse
import os
from types import ModuleType

from oasis_ray.telemetry.nvml import MigDevice, NvmlReader, NvmlUnavailable

ADDRESS_PLACEHOLDER = "<head-ip>:6379"


def ray_start_lines(devices: list[MigDevice], address: str) -> list[str]:
    """One `ray start` line per MIG profile, profiles sorted so the output is stable to diff."""
    by_profile: dict[str, list[str]] = {}
    for device in devices:
        by_profile.setdefault(device.profile, []).append(device.uuid)
    return [
        f"CUDA_VISIBLE_DEVICES={','.join(uuids)} ray start --address={address} "
        f"--num-gpus={len(uuids)} --resources='{{\"MIG-{profile}\": {len(uuids)}}}'"
        for profile, uuids in sorted(by_profile.items())
    ]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS", ADDRESS_PLACEHOLDER),
        help=f"Ray head address (default: $RAY_ADDRESS, else {ADDRESS_PLACEHOLDER})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, nvml: ModuleType | None = None) -> int:
    """`nvml` is passed through to NvmlReader, the same test seam, so the exit paths are testable without a GPU."""
    args = _parse_args(argv)
    try:
        with NvmlReader(nvml) as reader:
            indices = range(reader.device_count())
            modes = [reader.mig_mode_enabled(index) for index in indices]
            devices = [device for index in indices for device in reader.mig_devices(index)]
    except NvmlUnavailable as error:
        print(f"NVML unavailable: {error}")
        return 1
    if not any(modes):
        print(f"MIG mode is off on all {len(modes)} GPU(s) of this node; there is nothing to split.")
        return 0
    if not devices:
        print("MIG mode is on, but no MIG devices exist yet (create GPU and compute instances first).")
        return 0
    for line in ray_start_lines(devices, args.address):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
