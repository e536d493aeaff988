"""Sweep spec validation, trial expansion and identity, and the sweep's refusal to start on a bad spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from oasis_ray.profiling.sweep_plan import expand_trials, group_by_engine, trial_resources
from oasis_ray.profiling.sweep_spec import (
    CpuTarget,
    GpuTarget,
    MigTarget,
    SpecError,
    SweepSpec,
    Variant,
    load_spec,
    parse_spec,
    spec_hash,
)
from profiling_jobs import sweep

SPECS_DIR = Path(__file__).resolve().parents[1] / "profiling_jobs" / "specs"


def raw_spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "unit",
        "models": [{"model_id": "tiny"}],
        "hardware": [{"kind": "cpu", "num_cpus": 0.5}],
        "max_num_seqs": [2, 4],
        "variants": ["standard", "chunked_prefill"],
        "query_types": [
            {"type": "LISO", "input_tokens": 200, "output_tokens": 20},
            {"type": "SILO", "input_tokens": 20, "output_tokens": 200},
        ],
        "slo": {"p95_e2e_s": 2.0},
        "engine": {"max_model_len": 512, "dtype": "float32"},
    }
    return {**base, **overrides}


def spec_error(raw: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    return str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"variants": ["standard", "turbo"]}, "variants[1]: Input should be 'standard', 'prefix_caching' or"),
        ({"max_num_seqs": []}, "max_num_seqs: List should have at least 1 item"),
        ({"hardware": []}, "hardware: List should have at least 1 item"),
        ({"slo": {"p95_e2e_s": -1}}, "slo.p95_e2e_s: Input should be greater than 0"),
        ({"slo": {"p95_e2e_s": 2, "p95_ttft_s": 0}}, "slo.p95_ttft_s: Input should be greater than 0"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"hardware": [{"kind": "gpu", "clocks": [1400]}]}, "hardware[0].clocks: unknown field"),
        ({"hardware": [{"kind": "tpu"}]}, "hardware[0]: Input tag 'tpu' found using 'kind'"),
        ({"hardware": [{"kind": "mig", "mig_profile": "small"}]}, "hardware[0].mig_profile: String should match"),
        ({"hardware": [{"kind": "gpu", "clocks_mhz": [1410, 1410]}]}, "hardware[0].clocks_mhz[1]: duplicate 1410"),
        ({"max_num_seqs": [4, 2, 4]}, "max_num_seqs[2]: duplicate 4"),
        ({"query_types": ["LISO", "LISO"]}, "query_types[1].type: duplicate LISO"),
        ({"models": [{"model_id": "a"}, {"model_id": "a", "source": "x/a"}]}, "models[1].model_id: duplicate a"),
        (
            {"query_types": [{"type": "SILO", "output_tokens": 0}]},
            "query_types[0].output_tokens: Input should be greater",
        ),
        ({"sweep_mode": "random"}, "sweep_mode: Input should be 'one-at-a-time' or 'grid'"),
        ({"engine": {"max_num_seqs": 8}}, "engine.max_num_seqs: set per trial by the sweep's max_num_seqs"),
        ({"engine": {"max_model_len": 128}}, "query_types[0]: LISO(200/20) needs 220 tokens of context, over engine."),
        ({"engine": {"dtype": "int3"}}, "engine.dtype: Input should be 'auto', 'float32'"),
        ({"engine": {"beam_width": 3}}, "engine.beam_width: unknown field"),
        ({"search": {"tolerance": 1.5}}, "search.tolerance: Input should be less than 1"),
        (
            {"load": {"min_measured_requests": 1}},
            "load.min_measured_requests: Input should be greater than or equal to 2",
        ),
    ],
)
def test_bad_spec_names_the_field(overrides: dict[str, Any], expected: str) -> None:
    assert expected in spec_error(raw_spec(**overrides))


def test_engine_problem_of_some_combinations_names_them() -> None:
    message = spec_error(raw_spec(engine={"max_model_len": 512, "max_num_batched_tokens": 256}))
    assert (
        "engine.max_num_batched_tokens: 256 is below max_model_len 512; without chunked prefill a full-length prompt "
        "could never be scheduled (raise it or set enable_chunked_prefill: true) "
        "(for max_num_seqs 2 with variant standard, max_num_seqs 4 with variant standard)"
    ) in message


def test_every_problem_is_listed_not_just_the_first() -> None:
    message = spec_error(raw_spec(variants=["warp"], slo={"p95_e2e_s": 0}, extra=1))
    assert message.splitlines()[1:] == [
        "  variants[0]: Input should be 'standard', 'prefix_caching' or 'chunked_prefill'",
        "  slo.p95_e2e_s: Input should be greater than 0",
        "  extra: unknown field",
    ]


def test_bare_query_types_take_the_paper_lengths() -> None:
    spec = parse_spec(raw_spec(query_types=["LISO", {"type": "SILO", "output_tokens": 300}], engine={}))
    assert [(q.type.value, q.input_tokens, q.output_tokens) for q in spec.query_types] == [
        ("LISO", 1000, 50),
        ("SILO", 50, 300),
    ]
    defaults = parse_spec({k: v for k, v in raw_spec(engine={}).items() if k not in ("query_types", "slo")})
    assert [q.label() for q in defaults.query_types] == [
        "SISO(50/50)",
        "LISO(1000/50)",
        "SILO(50/1000)",
        "LILO(1000/1000)",
    ]
    assert defaults.slo.p95_e2e_s == 20.0


def test_load_spec_reports_yaml_problems_with_the_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"broken\.yaml is not valid YAML"):
        load_spec(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(
        SpecError, match=r"list\.yaml: invalid sweep spec: expected a mapping at the top level, got list"
    ):
        load_spec(listed)
    with pytest.raises(SpecError, match="cannot read sweep spec"):
        load_spec(tmp_path / "missing.yaml")


def test_one_at_a_time_varies_each_knob_alone_from_the_first_values() -> None:
    spec = parse_spec(
        raw_spec(
            hardware=[{"kind": "gpu", "accelerator_type": "H100", "clocks_mhz": [1980, 1410, 990]}],
            max_num_seqs=[8, 16, 32],
            variants=["standard", "prefix_caching"],
        )
    )
    trials = expand_trials(spec)
    settings = [
        (t.engine_config.clock_mhz, t.engine_config.max_num_seqs, t.engine_config.variant.value) for t in trials
    ]
    assert settings[::2] == [
        (1980, 8, "standard"),
        (1410, 8, "standard"),
        (990, 8, "standard"),
        (1980, 16, "standard"),
        (1980, 32, "standard"),
        (1980, 8, "prefix_caching"),
    ]
    assert [t.query.type.value for t in trials[:2]] == ["LISO", "SILO"]
    assert len(trials) == 12


def test_grid_profiles_every_combination_for_every_model_and_device() -> None:
    spec = parse_spec(
        raw_spec(
            sweep_mode="grid",
            models=[{"model_id": "a"}, {"model_id": "b", "source": "org/b"}],
            hardware=[
                {"kind": "cpu"},
                {"kind": "gpu", "clocks_mhz": [1980, 1410]},
                {"kind": "mig", "mig_profile": "1g.10gb"},
            ],
        )
    )
    trials = expand_trials(spec)
    # per model: cpu 2x2, gpu 2 clocks x 2 x 2, mig 2x2 engine configurations; two query types each
    assert len(trials) == 2 * (4 + 8 + 4) * 2
    assert len({t.trial_id for t in trials}) == len(trials)
    assert len(group_by_engine(trials)) == 2 * (4 + 8 + 4)


def test_trial_engine_settings_carry_the_knobs() -> None:
    (config, trials), *_ = group_by_engine(expand_trials(parse_spec(raw_spec(variants=["chunked_prefill"]))))
    assert [t.query.type.value for t in trials] == ["LISO", "SILO"]
    assert config.engine.engine_kwargs() == {
        "max_num_seqs": 2,
        "max_model_len": 512,
        "enable_prefix_caching": False,
        "enable_chunked_prefill": True,
        "dtype": "float32",
        "gpu_memory_utilization": 0.9,
        "load_format": "auto",
    }


def test_trial_ids_survive_a_growing_spec_and_change_with_what_they_measure() -> None:
    ids = {t.label(): t.trial_id for t in expand_trials(parse_spec(raw_spec()))}
    grown = {t.label(): t.trial_id for t in expand_trials(parse_spec(raw_spec(max_num_seqs=[2, 4, 8])))}
    assert {label: grown[label] for label in ids} == ids
    assert len(grown) == len(ids) + 2
    longer_timeout = {t.label(): t.trial_id for t in expand_trials(parse_spec(raw_spec(trial_timeout_s=60)))}
    assert longer_timeout == ids
    tighter_slo = {t.label(): t.trial_id for t in expand_trials(parse_spec(raw_spec(slo={"p95_e2e_s": 1.0})))}
    assert set(tighter_slo.values()).isdisjoint(ids.values())


def test_spec_hash_ignores_key_order_but_not_values() -> None:
    raw = raw_spec()
    reordered = dict(reversed(list(raw.items())))
    assert spec_hash(parse_spec(raw)) == spec_hash(parse_spec(reordered))
    assert spec_hash(parse_spec(raw)) != spec_hash(parse_spec(raw_spec(slo={"p95_e2e_s": 2.5})))


def test_each_trial_asks_ray_for_exactly_its_device() -> None:
    assert trial_resources(CpuTarget(kind="cpu", num_cpus=0.5)) == {"num_cpus": 0.5, "num_gpus": 0}
    assert trial_resources(GpuTarget(kind="gpu", accelerator_type="A100")) == {
        "num_cpus": 1.0,
        "num_gpus": 1,
        "accelerator_type": "A100",
    }
    assert trial_resources(GpuTarget(kind="gpu")) == {"num_cpus": 1.0, "num_gpus": 1}
    assert trial_resources(GpuTarget(kind="gpu"), tensor_parallel_size=4) == {"num_cpus": 1.0, "num_gpus": 4}
    assert trial_resources(MigTarget(kind="mig", mig_profile="3g.40gb", num_cpus=2)) == {
        "num_cpus": 2,
        "num_gpus": 1,
        "resources": {"MIG-3g.40gb": 1},
    }


def test_a_cpu_target_can_hold_the_custom_resource_of_a_kind_of_node() -> None:
    """How a CPU node stands in for a MIG node in the multi-node test: the trial asks for the node's resource."""
    standin = CpuTarget(kind="cpu", num_cpus=0.5, custom_resources={"MIG-1g.10gb": 1})
    assert trial_resources(standin) == {"num_cpus": 0.5, "num_gpus": 0, "resources": {"MIG-1g.10gb": 1}}
    assert standin.label() == "cpu x0.5 +MIG-1g.10gb"
    plain, held = (expand_trials(parse_spec(raw_spec(hardware=[{"kind": "cpu", **extra}])))[0].trial_id
                   for extra in ({}, {"custom_resources": {"MIG-1g.10gb": 1}}))
    assert plain != held
    assert "hardware[0].custom_resources.MIG-1g.10gb: Input should be greater than 0" in spec_error(
        raw_spec(hardware=[{"kind": "cpu", "custom_resources": {"MIG-1g.10gb": 0}}]))


def test_power_limits_and_tensor_parallelism_are_knobs_of_a_gpu_target() -> None:
    gpu = {"kind": "gpu", "clocks_mhz": [1410, 990], "power_limits_w": [400, 250], "tensor_parallel_sizes": [1, 2]}
    configs = [config for config, _ in
               group_by_engine(expand_trials(parse_spec(raw_spec(hardware=[gpu], variants=["standard"]))))]
    knobs = [(c.clock_mhz, c.power_limit_w, c.tensor_parallel_size, c.max_num_seqs) for c in configs]
    assert knobs == [(1410, 400, 1, 2), (990, 400, 1, 2), (1410, 250, 1, 2), (1410, 400, 2, 2), (1410, 400, 1, 4)]
    assert configs[3].engine_kwargs()["tensor_parallel_size"] == 2
    assert "tensor_parallel_size" not in configs[0].engine_kwargs()
    assert configs[3].label() == "tiny | gpu any x2 TP @1410MHz cap 400W | batch 2 | standard"
    grid = expand_trials(parse_spec(raw_spec(hardware=[gpu], variants=["standard"], sweep_mode="grid")))
    assert len(group_by_engine(grid)) == 2 * 2 * 2 * 2


def test_trial_ids_of_trials_measured_before_the_new_knobs_are_kept() -> None:
    """Ids hashed before power limits and tensor parallelism existed (the committed table's among them)."""
    spec = load_spec(SPECS_DIR / "embedded_default.yaml")
    assert [t.trial_id for t in expand_trials(spec)] == [
        "fed289b15fbc229a", "4ecfcea9941223e4", "b2e69dbdae527462", "0f45bfec0a3daf45"]
    gpu_ids = [t.trial_id for t in expand_trials(load_spec(SPECS_DIR / "gpu_example.yaml"))][:2]
    assert gpu_ids == ["0c429c60e91a5aa8", "ca5cce2267f06f13"]


@pytest.mark.parametrize(("gpu", "field"), [
    ({"power_limits_w": [250, 250]}, "hardware[0].power_limits_w[1]: duplicate 250"),
    ({"tensor_parallel_sizes": []}, "hardware[0].tensor_parallel_sizes: list at least one degree"),
    ({"tensor_parallel_sizes": [0]}, "hardware[0].tensor_parallel_sizes[0]: Input should be greater than 0"),
])
def test_bad_power_limits_and_degrees_are_refused_naming_the_field(gpu: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(raw_spec(hardware=[{"kind": "gpu", **gpu}]))
    assert field in str(error.value)


def test_variants_switch_one_feature_each() -> None:
    assert [v.engine_flags() for v in Variant] == [
        {"enable_prefix_caching": False, "enable_chunked_prefill": False},
        {"enable_prefix_caching": True, "enable_chunked_prefill": False},
        {"enable_prefix_caching": False, "enable_chunked_prefill": True},
    ]


@pytest.mark.parametrize("name", ["tiny_cpu.yaml", "gpu_example.yaml"])
def test_shipped_specs_are_valid(name: str) -> None:
    spec = load_spec(SPECS_DIR / name)
    assert isinstance(spec, SweepSpec) and expand_trials(spec)


def test_bad_spec_stops_the_sweep_before_ray_or_any_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sweep went past spec validation")

    monkeypatch.setattr(sweep, "_run_trials", must_not_run)
    monkeypatch.setattr(sweep.ray, "init", must_not_run)
    spec_path = tmp_path / "bad.yaml"
    spec_path.write_text(yaml.safe_dump(raw_spec(variants=["standard", "speculative"])))
    out = tmp_path / "out"
    assert sweep.main(["--spec", str(spec_path), "--out", str(out)]) == sweep.EXIT_BAD_SPEC
    assert "variants[1]: Input should be 'standard', 'prefix_caching' or 'chunked_prefill'" in capsys.readouterr().err
    assert not out.exists()
