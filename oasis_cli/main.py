"""`oasis`: one command for the documented paths, in the style of `vllm` and `ray`.

A thin dispatcher: each subcommand is the project's existing command module
(its main(argv)), reached by one name, with the running cluster found and
Ray's token authentication turned on for it, so no environment variable is
the user's to know. Modules that load Ray, vLLM or the Serve layer are
imported only when their subcommand runs, which keeps `oasis --help` fast and
keeps the library free of Serve code.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

EXIT_USAGE = 2


@dataclass(frozen=True)
class Command:
    summary: str
    examples: tuple[str, ...]
    target: str
    """"module:function" taking argv and returning an exit status."""
    fixed_args: tuple[str, ...] = ()
    """Arguments put before the user's (the subcommand of a module with several)."""
    options_of: str | None = None
    """The module command whose options this one takes, shown under --help."""

    def run(self, argv: list[str]) -> int:
        if self.options_of and any(arg in ("-h", "--help") for arg in argv):
            print(f"{self.summary}\n\nexamples:\n" + "".join(f"  {line}\n" for line in self.examples))
            print(f"options (those of `{self.options_of}`):\n", flush=True)
        module_name, function = self.target.split(":")
        entry: Callable[[list[str]], int | None] = getattr(importlib.import_module(module_name), function)
        try:
            return int(entry([*self.fixed_args, *argv]) or 0)
        except SystemExit as exit_:  # argparse's --help and usage errors
            return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE


COMMANDS: dict[str, Command] = {
    "serve": Command(
        "serve the app in serve_config.yaml (wraps `serve run`), on the running cluster or a new one",
        ("oasis serve", "oasis serve my_config.yaml --non-blocking"),
        "oasis_cli.cluster_commands:serve",
    ),
    "profile": Command(
        "profile a sweep spec into a hardware cost table, as a Ray job on the running cluster",
        ("oasis profile profiling_jobs/specs/tiny_cpu.yaml --out /tmp/hct-tiny-cpu",),
        "oasis_cli.profile:main",
    ),
    "report": Command(
        "figures and a markdown summary of a cost table",
        ("oasis report /tmp/hct-tiny-cpu", "oasis report /tmp/hct-tiny-cpu/hct.parquet --out /tmp/report"),
        "profiling_jobs.report:main",
        options_of="python -m profiling_jobs.report",
    ),
    "plan": Command(
        "what to deploy for given rates, and what it costs",
        ("oasis plan --hct paper --demand llama-3-8b:LISO=0.0114 --gpus 8",
         "oasis plan --hct /tmp/hct-tiny-cpu --inventory inventory.yaml --trace ../shared/traces/azure_llm_2023_conv.csv"),
        "oasis_ray.planning.capacity_cli:main",
        fixed_args=("plan",),
        options_of="python -m oasis_ray.planning.capacity_cli plan",
    ),
    "simulate": Command(
        "policies side by side on a trace (static, static-peak, OASIS reactive, OASIS joint + forecast)",
        ("oasis simulate --trace ../shared/traces/azure_llm_2023_conv.csv --out /tmp/sim",
         "oasis simulate --trace ../shared/traces/azure_llm_2023_code.csv --policies static,oasis --duration 600"),
        "oasis_ray.planning.capacity_cli:main",
        fixed_args=("simulate",),
        options_of="python -m oasis_ray.planning.capacity_cli simulate",
    ),
    "replay": Command(
        "replay a trace window, open loop, against a running app",
        ("oasis replay --url http://127.0.0.1:8000 --model oasis-tiny-llama "
         "--trace ../shared/traces/azure_llm_2023_conv.csv --duration 30 --out /tmp/replay",),
        "oasis_ray.planning.capacity_cli:main",
        fixed_args=("replay",),
        options_of="python -m oasis_ray.planning.capacity_cli replay",
    ),
    "status": Command(
        "routes, replicas by shape, rate and P95 per query type, scaling decisions, power and energy",
        ("oasis status", "oasis status --json", "oasis status --address 10.0.0.1:6379 --app oasis"),
        "oasis_cli.cluster_commands:status",
        options_of="python -m deployments.status; --address defaults to the cluster running on this machine",
    ),
    "mig": Command(
        "the `ray start` lines that give each MIG profile on this node its own raylet",
        ("oasis mig", "oasis mig --address 10.0.0.1:6379"),
        "oasis_cli.cluster_commands:mig",
        options_of="python -m oasis_ray.telemetry.mig; --address defaults to the cluster this node belongs to",
    ),
    "kuberay": Command(
        "render a KubeRay RayService manifest from serve_config.yaml",
        ("oasis kuberay render --config deploy/kuberay/serve_config.gpu.yaml --out rayservice.yaml",),
        "oasis_cli.kuberay:main",
    ),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: oasis <command> [options]   (oasis <command> --help for its options and examples)", "",
             "commands:"]
    lines += [f"  {name.ljust(width)}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "examples:"]
    lines += [f"  {command.examples[0]}" for command in COMMANDS.values()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else EXIT_USAGE
    name, rest = args[0], args[1:]
    if not sys.stderr.isatty():
        # Progress bars (simulate, replay) only where someone watches; tqdm reads this when first imported.
        os.environ.setdefault("TQDM_DISABLE", "1")
    command = COMMANDS.get(name)
    if command is None:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"oasis: unknown command '{name}'{hint}\n\n{usage()}", file=sys.stderr)
        return EXIT_USAGE
    return command.run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
