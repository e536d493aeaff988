"""The RayService manifest matches the app config it was rendered from.

Checked on the manifest as Kubernetes reads it (the YAML document), not on the
renderer's objects: every shape of every route has a worker group whose pods
get the device from Kubernetes and advertise it to Ray, and the Serve config
round-trips through serveConfigV2. No KubeRay CRD schema could be had from a
package registry (PyPI and npm have no kuberay client or CRD package), so the
manifest is not validated against the CRD; the renderer's pydantic models are
strict about the fields it emits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from oasis_cli import kuberay as kuberay_cli
from oasis_ray.config import parse_config
from oasis_ray.kuberay.render import RenderOptions, render_rayservice

REPO_ROOT = Path(__file__).resolve().parents[1]
GPU_CONFIG = REPO_ROOT / "deploy" / "kuberay" / "serve_config.gpu.yaml"
EXAMPLE = REPO_ROOT / "deploy" / "kuberay" / "rayservice.yaml"
# As the example's header renders it.
EXAMPLE_ARGS = ["render", "--config", str(GPU_CONFIG), "--gpu-product", "A100=NVIDIA-A100-SXM4-80GB"]
PRODUCTS = {"A100": "NVIDIA-A100-SXM4-80GB"}


def _render(config: Path) -> dict[str, Any]:
    options = RenderOptions(ray_version="2.60.0", gpu_products=PRODUCTS)
    return render_rayservice(yaml.safe_load(config.read_text()), options).document()


def _ray_resources(group: dict[str, Any]) -> dict[str, float]:
    params = group["rayStartParams"]
    custom = json.loads(params["resources"].strip('"').replace('\\"', '"')) if "resources" in params else {}
    return {"CPU": float(params["num-cpus"]), "GPU": float(params["num-gpus"]), **custom}


def _provides(group: dict[str, Any], demand: dict[str, float], device: tuple[str, int],
              accelerator_type: str | None) -> bool:
    pod = group["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    ray = _ray_resources(group)
    device_name, count = device
    return (
        all(ray.get(name, 0.0) >= amount for name, amount in demand.items())
        and (count == 0 or int(limits.get(device_name, 0)) >= count)
        and (accelerator_type is None or pod.get("nodeSelector") == {"nvidia.com/gpu.product": PRODUCTS[accelerator_type]})
    )


@pytest.mark.parametrize("config", [GPU_CONFIG, REPO_ROOT / "serve_config.yaml"], ids=["gpu-mig", "cpu"])
def test_every_route_shape_has_a_worker_group_that_provides_it(config: Path) -> None:
    manifest = _render(config)
    groups = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    serve_config = yaml.safe_load(config.read_text())
    checked = 0
    for app in serve_config["applications"]:
        for route in parse_config(app["args"]).routes:
            for shape, resources in route.shapes().items():
                mig = [name[4:] for name in resources.custom_resources if name.startswith("MIG-")]
                if resources.accelerator == "cpu":
                    device, gpus = ("", 0), 0
                elif mig:
                    device, gpus = (f"nvidia.com/mig-{mig[0]}", 1), 1
                else:
                    device, gpus = ("nvidia.com/gpu", resources.tensor_parallel_size), resources.tensor_parallel_size
                demand = {"CPU": resources.cpus, "GPU": gpus, **resources.custom_resources}
                accelerator = resources.accelerator_type if not mig else None
                providers = [g for g in groups if _provides(g, demand, device, accelerator)]
                assert providers, f"no worker group provides {route.key}@{shape}: {demand}, {device}"
                assert max(g["maxReplicas"] for g in providers) >= route.max_replicas
                checked += 1
    assert checked == (5 if config == GPU_CONFIG else 2)


def test_the_serve_config_round_trips_through_serve_config_v2() -> None:
    manifest = _render(GPU_CONFIG)
    assert yaml.safe_load(manifest["spec"]["serveConfigV2"]) == yaml.safe_load(GPU_CONFIG.read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    assert manifest["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_pods_carry_the_samplers_needs_and_the_scrape_annotations() -> None:
    manifest = _render(GPU_CONFIG)
    cluster = manifest["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    port = str(yaml.safe_load(GPU_CONFIG.read_text())["applications"][0]["args"]["telemetry"]["prometheus_port"])
    for template in templates:
        assert template["metadata"]["annotations"]["prometheus.io/port"] == port
    head_ports = {p["containerPort"] for p in templates[0]["spec"]["containers"][0]["ports"]}
    assert {6379, 8265, 8000, int(port)} <= head_ports
    for template in templates[1:]:
        env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
        assert "utility" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")  # NVML
        assert template["spec"]["runtimeClassName"] == "nvidia"
    mig_groups = [g for g in cluster["workerGroupSpecs"] if g["groupName"].startswith("mig-")]
    assert sorted(_ray_resources(g).keys() - {"CPU", "GPU"} for g in mig_groups) == [{"MIG-1g.10gb"}, {"MIG-3g.40gb"}]
    assert all(g["replicas"] == 0 and g["minReplicas"] == 0 for g in mig_groups)


def test_the_committed_example_is_what_the_command_renders(tmp_path: Path) -> None:
    out = tmp_path / "rayservice.yaml"
    assert kuberay_cli.main([*EXAMPLE_ARGS, "--out", str(out)]) == 0
    assert out.read_text() == EXAMPLE.read_text(), "re-render deploy/kuberay/rayservice.yaml (see its config's header)"


def test_a_bad_config_is_refused_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = yaml.safe_load(GPU_CONFIG.read_text())
    raw["applications"][0]["args"]["routes"][1]["model"] = "llama-3-70b"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    assert kuberay_cli.main(["render", "--config", str(bad)]) == 2
    assert "routes[1].model: 'llama-3-70b' is not a configured model" in capsys.readouterr().err
