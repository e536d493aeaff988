"""`python -m deployments.status`: the status view of a running oasis app, from any machine in its Ray cluster.

The same snapshot GET /oasis/status renders, fetched through the ingress's
handle, so it needs no API key and works where the HTTP port is not exposed.
"""

from __future__ import annotations

import argparse
import sys

import ray
from ray import serve

from oasis_ray.config import INGRESS_DEPLOYMENT
from oasis_ray.telemetry.status_view import render_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.status", description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="oasis", help="Serve application name (serve_config.yaml's is 'oasis').")
    parser.add_argument("--address", default="auto", help="Ray cluster address, as for ray.init.")
    parser.add_argument("--json", action="store_true", help="Print the snapshot as JSON instead of text.")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
    try:
        handle = serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name=args.app)
        snapshot = handle.status_snapshot.remote().result(timeout_s=args.timeout_s)
    except Exception as error:
        print(f"error: could not read the status of app '{args.app}': {error}", file=sys.stderr)
        return 1
    print(snapshot.model_dump_json(indent=2) if args.json else render_status(snapshot), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
