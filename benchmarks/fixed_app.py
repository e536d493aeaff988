"""What the overload and soak benchmarks serve: the default app with its replicas held, on a free local port."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml


def default_args_without_autoscaling() -> dict:
    """serve_config.yaml's app args without autoscaling: one replica per route, so the replicas compared or
    measured at the start are those at the end."""
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "serve_config.yaml").read_text())
    args = config["applications"][0]["args"]
    args.pop("autoscaling", None)
    return args


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
