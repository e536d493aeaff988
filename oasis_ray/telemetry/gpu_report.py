"""What this machine's GPUs read over a few seconds, through the same NVML reader the system uses.

    python -m oasis_ray.telemetry.gpu_report [--seconds 3]

Per GPU: power as sampled (idle unless something else is running), the
energy counter's delta over the window and the mean power it implies,
the SM and memory clocks seen, the power limits, and the MIG devices. It is
read-only, needs only nvidia-ml-py and pydantic (scripts/gpu_check.sh runs it
on machines without Ray or vLLM), and where NVML cannot be used it prints
NVML's reason instead of any figure.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType

from oasis_ray.telemetry.nvml import GpuSample, NvmlReader, NvmlUnavailable

SAMPLE_PERIOD_S = 0.5


def report_lines(reader: NvmlReader, seconds: float, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Sample every GPU for `seconds` and describe what was read; a metric NVML withholds is said so."""
    samples: list[list[GpuSample]] = [reader.sample_all()]
    rounds = max(1, round(seconds / SAMPLE_PERIOD_S))
    for _ in range(rounds):
        sleep(SAMPLE_PERIOD_S)
        samples.append(reader.sample_all())
    lines = [f"NVML driver {reader.driver_version}, {reader.device_count()} GPU(s), sampled over {seconds:g} s"]
    for index, series in enumerate(zip(*samples, strict=True)):
        lines += _gpu_lines(reader, index, list(series))
    return lines


def _gpu_lines(reader: NvmlReader, index: int, series: list[GpuSample]) -> list[str]:
    first, last = series[0], series[-1]
    lines = [f"GPU {index}: {first.name} ({first.uuid})"]
    powers = [s.power_w for s in series if s.power_w is not None]
    lines.append(
        f"  power sampled: {min(powers):.1f}-{max(powers):.1f} W over {len(powers)} samples"
        if powers
        else "  power sampled: not offered by this GPU"
    )
    if first.energy_mj is not None and last.energy_mj is not None:
        delta_j = (last.energy_mj - first.energy_mj) / 1000.0
        window_s = last.timestamp_s - first.timestamp_s
        lines.append(f"  energy counter: +{delta_j:.1f} J in {window_s:.2f} s = {delta_j / window_s:.1f} W mean")
    else:
        lines.append("  energy counter: not offered by this GPU")
    lines.append(
        f"  SM clock seen: {_range(s.sm_clock_mhz for s in series)} MHz; "
        f"memory clock: {_range(s.mem_clock_mhz for s in series)} MHz"
    )
    limits = reader.power_limits(index)
    lines.append(
        f"  power limit: {_value(limits.limit_w)} W (enforced {_value(limits.enforced_w)} W, "
        f"default {_value(limits.default_w)} W, settable {_value(limits.min_w)}-{_value(limits.max_w)} W)"
    )
    devices = reader.mig_devices(index)
    mode = {True: "on", False: "off", None: "not supported"}[reader.mig_mode_enabled(index)]
    lines.append(f"  MIG: {mode}, {len(devices)} device(s)")
    lines += [f"    {d.profile} {d.uuid} {d.memory_bytes / 2**30:.1f} GiB" for d in devices]
    unsupported = sorted({name for s in series for name in s.unsupported} | set(limits.unsupported))
    if unsupported:
        lines.append(f"  not offered: {', '.join(unsupported)}")
    return lines


def _range(values: Iterable[int | None]) -> str:
    seen = [v for v in values if v is not None]
    if not seen:
        return "not offered"
    return f"{min(seen)}" if min(seen) == max(seen) else f"{min(seen)}-{max(seen)}"


def _value(watts: float | None) -> str:
    return "n/a" if watts is None else f"{watts:.0f}"


def main(argv: Sequence[str] | None = None, nvml: ModuleType | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="sampling window (default 3)")
    args = parser.parse_args(argv)
    try:
        reader = NvmlReader(nvml)
    except NvmlUnavailable as error:
        print(f"NVML unavailable: {error}")
        return 0
    with reader:
        print("\n".join(report_lines(reader, args.seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
