"""What every real-GPU test needs first: an open NVML session, or a skip that says why there is none."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oasis_ray.telemetry.nvml import NvmlReader, NvmlUnavailable


@pytest.fixture(scope="module")
def nvml_reader() -> Iterator[NvmlReader]:
    """An open NvmlReader on this machine; without a usable GPU the test is skipped with NVML's own reason.

    The reason is printed rather than swallowed so a skipped run shows whether
    the driver, the library or the GPU itself was missing.
    """
    try:
        opened = NvmlReader()
    except NvmlUnavailable as reason:
        pytest.skip(f"no GPU: {reason}")
    with opened:
        yield opened
