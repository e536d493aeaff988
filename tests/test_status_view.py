"""The status view: the whole text for a known snapshot, and "unavailable" (never 0) where nothing was measured."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from oasis_ray.device_setting import DeviceSetting
from oasis_ray.device_setting import DeviceState, LeaseStatus
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.record import ScalingRecord
from oasis_ray.telemetry.status_view import GpuStatus, QueryTypeStatus, RouteStatus, StatusSnapshot, render_status

TAKEN_AT = datetime(2026, 11, 21, 6, 30, tzinfo=UTC)
H100 = "NVIDIA H100 80GB HBM3"


def snapshot(**overrides: object) -> StatusSnapshot:
    fields: dict[str, object] = {
        "taken_at": TAKEN_AT,
        "window_s": 60,
        "routes": [
            RouteStatus(model="tiny", route="short-output", replicas={"full-gpu": 1, "1g.10gb": 0}),
            RouteStatus(model="tiny", route="long-output", replicas={}),
        ],
        "query_types": [
            QueryTypeStatus(model="tiny", query_type=QueryType.SISO, route="short-output", rate_rps=1.25,
                            p95_e2e_s=0.84, slo_p95_e2e_s=20),
            QueryTypeStatus(model="tiny", query_type=QueryType.LILO, route="long-output", rate_rps=0.0,
                            p95_e2e_s=None, slo_p95_e2e_s=20),
            QueryTypeStatus(model="tiny", query_type=QueryType.SILO, route="long-output", rate_rps=0.5,
                            p95_e2e_s=25.0, slo_p95_e2e_s=20),
        ],
        "scaling": [
            ScalingRecord(
                route="tiny/short-output", action="scale_up", advisory=True, observed_rps=3.0, forecast_rps=None,
                need_rps=3.3, gpus_required=1.0, chosen_shape="full-gpu", chosen_replicas=2, msrr_rps=4.0,
                replicas_before={"full-gpu": 1}, replicas_after={"full-gpu": 2}, reason="need exceeds capacity",
            )
        ],
        "gpus": [
            GpuStatus(node="node-a", index=0, name=H100, power_w=312.46, energy_j=18747.6),
            GpuStatus(node="node-a", index=1, name=H100, power_w=None, energy_j=None),
        ],
        "gpu_status": {
            "node-a": "ok: 2 GPU(s)", "node-b": "unavailable: nvmlInit failed: NVML Shared Library Not Found"
        },
        "gpu_settings": [
            LeaseStatus(holder="3f2a9c81d0e4aa55", app="oasis", route="tiny/short-output", shape="full-gpu",
                        mode="advisory", setting=DeviceSetting(sm_clock_mhz=855),
                        devices=(DeviceState(gpu="GPU 0 (NVIDIA H100 80GB HBM3, GPU-0)", state="advisory",
                                             note="clock_control is advisory: nothing set"),)),
        ],
    }
    return StatusSnapshot(**(fields | overrides))


def test_the_view_shows_routes_rates_slo_decisions_and_gpus() -> None:
    assert render_status(snapshot()) == (
        "oasis-ray status at 2026-11-21 06:30:00 UTC (rates, P95 and energy over the last 60 s)\n"
        "\n"
        "Routes\n"
        "  MODEL  ROUTE         REPLICAS\n"
        "  tiny   short-output  full-gpu:1\n"
        "  tiny   long-output   none running\n"
        "\n"
        "Query types\n"
        "  MODEL  TYPE  ROUTE         RATE (req/s)  P95 E2E (s)  SLO P95 (s)  SLO\n"
        "  tiny   SISO  short-output  1.25          0.840        20           met\n"
        "  tiny   LILO  long-output   0.00          -            20           -\n"
        "  tiny   SILO  long-output   0.50          25.000       20           MISSED\n"
        "\n"
        "Last scaling decisions\n"
        "  route=tiny/short-output action=scale_up advisory=true observed_rps=3 forecast_rps=- need_rps=3.3 "
        "gpus_required=1 shape=full-gpu shape_replicas=2 msrr_rps=4 before=full-gpu:1 after=full-gpu:2 "
        'reason="need exceeds capacity"\n'
        "\n"
        "GPUs\n"
        "  NODE    GPU  NAME                   POWER (W)    ENERGY (J)\n"
        "  node-a  0    NVIDIA H100 80GB HBM3  312.5        18747.6\n"
        "  node-a  1    NVIDIA H100 80GB HBM3  unavailable  unavailable\n"
        "  node node-b: power and energy unavailable: nvmlInit failed: NVML Shared Library Not Found\n"
        "\n"
        "GPU settings (clock_control: advisory)\n"
        "  route=tiny/short-output shape=full-gpu replica=3f2a9c81d0e4 mode=advisory would set sm_clock_mhz=855 "
        "on GPU 0 (NVIDIA H100 80GB HBM3, GPU-0): advisory (clock_control is advisory: nothing set)\n"
    )


def gpu_section(text: str) -> str:
    return text.split("\nGPUs\n", 1)[1].split("\n\nGPU settings", 1)[0] + "\n"


def test_without_a_gpu_power_and_energy_read_unavailable_and_no_zero_appears() -> None:
    text = render_status(snapshot(gpus=[], gpu_status={"local": "unavailable: nvmlInit failed: Driver Not Loaded"}))
    section = gpu_section(text)
    assert section == "  node local: power and energy unavailable: nvmlInit failed: Driver Not Loaded\n"
    assert not re.search(r"\b0(\.0+)?\b", section)


def test_before_any_sampler_reports_power_and_energy_read_unavailable() -> None:
    text = render_status(snapshot(gpus=[], gpu_status={}))
    assert gpu_section(text) == "  power and energy: unavailable (no GPU sampler has reported)\n"


def test_empty_sections_say_so() -> None:
    text = render_status(snapshot(routes=[], query_types=[], scaling=[]))
    assert "Routes\n  no routes\n" in text
    assert "Query types\n  no query types\n" in text
    assert "Last scaling decisions\n  none yet\n" in text
    assert render_status(snapshot(gpu_settings=[])).endswith(
        "GPU settings (clock_control: advisory)\n  no replica has reported its setting yet\n")


def test_with_clock_control_off_the_view_says_only_that() -> None:
    assert render_status(snapshot(clock_control="off")).endswith(
        "GPU settings (clock_control: off)\n  off: replicas set nothing and report nothing\n")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"gpu_status": {"node-b": "ok: 1 GPU(s)"}}, "gpus[0].node"),
        ({"window_s": 0}, "window_s"),
        ({"routes": [{"model": "tiny", "route": "r", "replicas": {"cpu": -1}}]}, "replicas"),
        ({"query_types": [{"model": "t", "query_type": "SISO", "route": "r", "rate_rps": -1.0,
                           "p95_e2e_s": None, "slo_p95_e2e_s": None}]}, "rate_rps"),
        ({"gpus": [{"node": "node-a", "index": 0, "name": H100, "power_w": -3.0, "energy_j": None}]}, "power_w"),
    ],
)
def test_impossible_snapshots_are_refused_with_the_field_named(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        snapshot(**overrides)
    assert field in str(error.value)
