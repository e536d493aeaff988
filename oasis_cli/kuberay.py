"""`oasis kuberay render`: a KubeRay RayService manifest from a Serve config file.

The config is checked with Ray Serve's own schema (what the head will run)
and the oasis app config (what build_app will accept) before anything is
written; the rendering itself is oasis_ray.kuberay.render.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from oasis_ray.config import ConfigError
from oasis_ray.kuberay.render import RenderError, RenderOptions, render_rayservice

EXIT_BAD_INPUT = 2
EXAMPLES = """\
examples:
  oasis kuberay render --config deploy/kuberay/serve_config.gpu.yaml --gpu-product A100=NVIDIA-A100-SXM4-80GB \\
      --image registry.example.com/oasis-ray:0.1.0 --out rayservice.yaml
  oasis kuberay render > rayservice.yaml          serve_config.yaml, to stdout
  kubectl apply -f rayservice.yaml                with the KubeRay operator and the NVIDIA GPU operator installed"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="oasis kuberay", description=__doc__.splitlines()[0],
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write the RayService manifest", epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    render.add_argument("--config", type=Path, default=Path("serve_config.yaml"), help="default: serve_config.yaml")
    render.add_argument("--out", type=Path, help="manifest file (default: stdout)")
    render.add_argument("--name", default="oasis", help="RayService name (default: oasis)")
    render.add_argument("--namespace")
    render.add_argument("--image", default="oasis-ray:latest", help="an image with oasis-ray and vLLM installed")
    render.add_argument("--ray-version", default=importlib.metadata.version("ray"),
                        help="the image's Ray version (default: this installation's)")
    render.add_argument("--gpu-product", action="append", default=[], metavar="TYPE=PRODUCT",
                        help="pin a route accelerator_type to nodes labelled nvidia.com/gpu.product=PRODUCT "
                             "(repeatable), e.g. A100=NVIDIA-A100-SXM4-80GB")
    args = parser.parse_args(argv)
    try:
        serve_config = _serve_config(args.config)
        options = RenderOptions(name=args.name, namespace=args.namespace, image=args.image,
                                ray_version=args.ray_version, gpu_products=_products(args.gpu_product))
        manifest = render_rayservice(serve_config, options)
    except (OSError, yaml.YAMLError, ValidationError, ConfigError, RenderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    text = yaml.safe_dump(manifest.document(), sort_keys=False)
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


def _serve_config(path: Path) -> dict:
    """Refused here, with Serve's field names, whatever `serve deploy` would refuse on the cluster."""
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load(path.read_text())
    ServeDeploySchema.model_validate(raw)
    return raw


def _products(pairs: list[str]) -> dict[str, str]:
    products = {}
    for pair in pairs:
        accelerator, sep, product = pair.partition("=")
        if not sep or not accelerator or not product:
            raise RenderError(f"--gpu-product: {pair!r} is not TYPE=PRODUCT")
        products[accelerator] = product
    return products
