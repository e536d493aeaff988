"""`oasis serve`, `oasis status` and `oasis mig`: the existing commands, pointed at the cluster that runs here.

Each resolves the cluster with oasis_cli.cluster (refusing to guess between
several, skipping a stale address file) and turns token auth on before
handing over, so `serve run`, the status view and the MIG lines all reach the
same cluster without RAY_ADDRESS or RAY_AUTH_MODE set by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from oasis_cli.cluster import LOCAL, ClusterChoiceError, Discovery, find_cluster
from oasis_cli.cluster_auth import use_cluster_token

EXIT_FAILED = 1
EXIT_USAGE = 2


def serve(argv: list[str]) -> int:
    """Replaces this process with `serve run`, so its output, Ctrl-C and exit status are serve's own."""
    parser = argparse.ArgumentParser(
        prog="oasis serve",
        description="Serve the app of a Serve config file with `serve run`: on the Ray cluster running here, or on a "
        "new local one when none runs. Options after the config go to `serve run` unchanged.",
        epilog="examples:\n  oasis serve                       serve_config.yaml on the embedded model, at :8000\n"
        "  oasis serve my_config.yaml --non-blocking\n  oasis serve --address 10.0.0.1:6379",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", default="serve_config.yaml", help="default: serve_config.yaml")
    parser.add_argument("--address", help="Ray cluster GCS host:port, or 'local' for a new one (default: "
                                           "RAY_ADDRESS, else the cluster running on this machine)")
    args, serve_options = parser.parse_known_args(argv)
    discovery = _discover(args.address)
    if discovery is None:
        return EXIT_USAGE
    if discovery.cluster is not None and discovery.cluster.is_dashboard_url:
        print("error: `serve run` needs the cluster's GCS address (host:port), not its dashboard URL", file=sys.stderr)
        return EXIT_USAGE
    use_cluster_token()
    address = discovery.cluster.address if discovery.cluster else LOCAL
    where = f"the cluster at {discovery.cluster.describe()}" if discovery.cluster else "a new local Ray cluster"
    print(f"[oasis] serve run {args.config} on {where}", flush=True)
    serve_cli = str(Path(sys.executable).with_name("serve"))
    os.execv(serve_cli, [serve_cli, "run", args.config, "--address", address, *serve_options])
    return EXIT_FAILED  # not reached: execv does not return


def status(argv: list[str]) -> int:
    from deployments import status as status_view

    if _wants_help(argv):
        return status_view.main(["--help"])
    address, rest = _address_option(argv)
    discovery = _discover(address)
    if discovery is None:
        return EXIT_USAGE
    if discovery.cluster is None:
        print("error: no Ray cluster runs here; start the app with `oasis serve` or name one with --address",
              file=sys.stderr)
        return EXIT_FAILED
    use_cluster_token()
    return status_view.main(["--address", discovery.cluster.address, *rest])


def mig(argv: list[str]) -> int:
    from oasis_ray.telemetry import mig as mig_lines

    if _wants_help(argv):
        return mig_lines.main(["--help"])
    address, rest = _address_option(argv)
    if address is None:
        discovery = _discover(None)
        if discovery is None:
            return EXIT_USAGE
        if discovery.cluster is not None and not discovery.cluster.is_dashboard_url:
            address = discovery.cluster.address
    return mig_lines.main([*(["--address", address] if address else []), *rest])


def _discover(address: str | None) -> Discovery | None:
    try:
        discovery = find_cluster(address)
    except ClusterChoiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    for note in discovery.notes:
        print(f"[oasis] {note}", file=sys.stderr)
    return discovery


def _address_option(argv: list[str]) -> tuple[str | None, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--address")
    args, rest = parser.parse_known_args(argv)
    return args.address, rest


def _wants_help(argv: list[str]) -> bool:
    return any(arg in ("-h", "--help") for arg in argv)
