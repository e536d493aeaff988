"""What every real-GPU test needs first: an open NVML session, or a skip that says why there is none.

These tests run where Ray and vLLM may be absent (scripts/gpu_check.sh), so
nothing here or in the tests imports more than pytest, pydantic, numpy and
nvidia-ml-py. They read by default; a test that changes a GPU setting (clock
lock, power limit) asks for `may_set`, which skips it unless
OASIS_GPU_MAY_SET=1, and restores the setting whatever the test does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from oasis_ray.telemetry.nvml import NvmlReader, NvmlUnavailable

MAY_SET_ENV = "OASIS_GPU_MAY_SET"


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


@pytest.fixture
def may_set(nvml_reader: NvmlReader) -> NvmlReader:
    """The reader, for a test allowed to change GPU settings; skipped unless OASIS_GPU_MAY_SET=1."""
    if os.environ.get(MAY_SET_ENV) != "1":
        pytest.skip(f"changes a GPU setting; set {MAY_SET_ENV}=1 to allow it (it is restored afterwards)")
    return nvml_reader
