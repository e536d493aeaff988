"""Config validation: every refusal names the field, before anything starts."""

from __future__ import annotations

import copy

import pytest

from deployments.app import build_app
from oasis_ray.config import ConfigError, parse_config
from tests.conftest import app_config


def _refusal(mutate) -> str:
    raw = copy.deepcopy(app_config())
    mutate(raw)
    with pytest.raises(ConfigError) as refused:
        parse_config(raw)
    return str(refused.value)


def test_valid_test_config_parses():
    config = parse_config(app_config())
    assert [r.name for r in config.routes] == ["short-output", "long-output"]
    assert config.resolved_api_key() == "test-secret-key"


def test_unknown_top_level_key():
    assert "max_tokenz: unknown field" in _refusal(lambda c: c.update(max_tokenz=3))


def test_unknown_nested_key():
    assert "routes[0].engine.max_num_seq: unknown field" in _refusal(
        lambda c: c["routes"][0]["engine"].update(max_num_seq=3))


@pytest.mark.parametrize("tau", [0, -5])
def test_tau_must_be_positive(tau):
    assert "models[0].tau_tokens: Input should be greater than 0" in _refusal(
        lambda c: c["models"][0].update(tau_tokens=tau))


def test_route_naming_missing_model():
    message = _refusal(lambda c: c["routes"][1].update(model="llama-9000"))
    assert "routes[1].model: 'llama-9000' is not a configured model" in message


def test_default_route_must_exist():
    assert "models[0].default_route: 'nowhere'" in _refusal(lambda c: c["models"][0].update(default_route="nowhere"))


def test_query_type_claimed_twice():
    message = _refusal(lambda c: c["routes"][1]["query_types"].append("SISO"))
    assert "routes[1].query_types: SISO of 'oasis-tiny-llama' is already served by route 'short-output'" in message


def test_unknown_query_type():
    assert "routes[0].query_types[1]" in _refusal(lambda c: c["routes"][0].update(query_types=["SISO", "MISO"]))


def test_batched_tokens_below_context_without_chunked_prefill():
    message = _refusal(lambda c: c["routes"][0]["engine"].update(max_num_batched_tokens=512))
    assert "routes[0].engine.max_num_batched_tokens: 512 is below max_model_len 2048" in message


def test_chunked_prefill_allows_small_token_budget():
    raw = copy.deepcopy(app_config())
    raw["routes"][0]["engine"].update(max_num_batched_tokens=512, enable_chunked_prefill=True)
    assert parse_config(raw).routes[0].engine.engine_kwargs()["max_num_batched_tokens"] == 512


def test_batched_tokens_below_batch_size():
    message = _refusal(lambda c: c["routes"][0]["engine"].update(
        max_num_batched_tokens=8, max_num_seqs=16, enable_chunked_prefill=True))
    assert "routes[0].engine.max_num_batched_tokens: 8 is below max_num_seqs 16" in message


def test_memory_share_out_of_range():
    assert "routes[0].engine.gpu_memory_utilization" in _refusal(
        lambda c: c["routes"][0]["engine"].update(gpu_memory_utilization=1.5))


def test_min_replicas_above_max():
    assert "routes[0].min_replicas: 3 exceeds max_replicas 1" in _refusal(lambda c: c["routes"][0].update(min_replicas=3))


def test_energy_header_needs_one_ingress_replica():
    assert "telemetry.energy_header: per-request energy needs ingress_replicas 1" in _refusal(
        lambda c: c.update(ingress_replicas=2))


def test_several_problems_reported_together():
    def break_twice(c):
        c["models"][0]["tau_tokens"] = 0
        c["bogus"] = True

    message = _refusal(break_twice)
    assert "models[0].tau_tokens" in message and "bogus: unknown field" in message


def test_context_longer_than_the_model_stops_the_build():
    raw = copy.deepcopy(app_config())
    raw["routes"][1]["engine"]["max_model_len"] = 8192
    with pytest.raises(ConfigError, match=r"routes\[1\].engine.max_model_len: 8192 exceeds the model's "
                                          r"max_position_embeddings 4096"):
        build_app(raw)


def test_clock_control_is_advisory_by_default_and_refuses_other_words():
    assert parse_config(app_config()).clock_control == "advisory"
    assert "clock_control: Input should be 'apply', 'advisory' or 'off'" in _refusal(
        lambda c: c.update(clock_control="maybe"))


def test_a_gpu_setting_out_of_range_is_refused_by_field():
    assert "routes[0].gpu_setting.sm_clock_mhz: Input should be greater than 0" in _refusal(
        lambda c: c["routes"][0].update(gpu_setting={"sm_clock_mhz": 0}))
    assert "routes[0].gpu_setting.power_limit: unknown field" in _refusal(
        lambda c: c["routes"][0].update(gpu_setting={"power_limit": 250}))


def _gpu_route(c, **resources):
    c["routes"][1]["resources"] = {"accelerator": "gpu", **resources}


def test_a_mig_slice_cannot_run_tensor_parallel():
    assert ("routes[1].mig_shapes[0].resources.tensor_parallel_size: a MIG slice cannot run tensor parallelism"
            in _refusal(lambda c: (_gpu_route(c), c["routes"][1].update(mig_shapes=[
                {"profile": "1g.10gb", "resources": {"tensor_parallel_size": 2}}]))))
    assert "routes[1].resources.tensor_parallel_size: a MIG slice (MIG-3g.40gb) cannot run tensor parallelism" in (
        _refusal(lambda c: _gpu_route(c, tensor_parallel_size=2, custom_resources={"MIG-3g.40gb": 1})))


def test_a_tensor_parallel_replica_asks_for_its_gpus_in_one_placement_group_on_one_node():
    from deployments.gpu_settings import ReplicaSettings
    from deployments.llm_routes import shape_llm_config

    raw = copy.deepcopy(app_config())
    _gpu_route(raw, tensor_parallel_size=4, cpus=2, accelerator_type="A100")
    config = parse_config(raw)
    route = config.routes[1]
    settings = ReplicaSettings(mode="advisory", route=route.key, shape="full-gpu", setting={}, follows_targets=True)
    llm = shape_llm_config(route, "full-gpu", route.resources, "/models/x", {}, False, config.telemetry, settings)
    assert llm.engine_kwargs["tensor_parallel_size"] == 4
    assert llm.placement_group_config == {
        "bundles": [{"GPU": 1, "CPU": 2.0}, {"GPU": 1}, {"GPU": 1}, {"GPU": 1}], "strategy": "STRICT_PACK"}
    assert route.resources.gpus == 4
    assert llm.callback_config.callback_kwargs["settings"]["mode"] == "advisory"
