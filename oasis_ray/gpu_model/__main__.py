"""python -m oasis_ray.gpu_model {fit, fit-report, build-table}: fit the parameters, check them, build the table.

- `fit` refits the parameters to the published figures and writes
  params_v1.json (or --out), printing the objective as it goes.
- `fit-report` prints every published figure beside the model's value and
  the summary against issue 10's targets.
- `build-table --out DIR` writes the paper table (published figures as
  published, the rest derived from the parameters) as an HCT directory that
  `oasis_ray.profiling.hct.load_hct` reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oasis_ray.gpu_model.params import PARAMS_FILE, committed_params, parse_params


def _params(path: Path | None):
    return committed_params() if path is None else parse_params(path.read_text(), str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oasis_ray.gpu_model", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="refit the parameters to the published figures (about a minute)")
    fit.add_argument("--out", type=Path, default=PARAMS_FILE, help=f"where to write them (default {PARAMS_FILE.name})")
    report = commands.add_parser("fit-report", help="every published figure beside the model's value, and the targets")
    report.add_argument("--params", type=Path, help="a parameter file (default: the committed params_v1.json)")
    build = commands.add_parser("build-table", help="write the paper table as an HCT directory")
    build.add_argument("--out", type=Path, required=True, help="the table's directory (created)")
    build.add_argument("--params", type=Path, help="a parameter file (default: the committed params_v1.json)")
    args = parser.parse_args(argv)

    if args.command == "fit":
        from oasis_ray.gpu_model.fit import fit as run_fit

        def progress(iteration: int, objective: float) -> None:
            print(f"iteration {iteration}: objective {objective:.4f}", file=sys.stderr, flush=True)

        params = run_fit(progress=progress)
        args.out.write_text(params.model_dump_json(indent=2) + "\n")
        print(f"wrote {args.out}: objective {params.provenance.objective:.4f} over "
              f"{params.provenance.figures_used} figures, {params.provenance.parameters_fitted} parameters")
    elif args.command == "fit-report":
        from oasis_ray.gpu_model.report import render

        print(render(_params(args.params)))
    else:
        from oasis_ray.gpu_model.paper_table import paper_table
        from oasis_ray.profiling.hct import write_hct

        table = paper_table(_params(args.params))
        path = write_hct(table, args.out)
        print(f"wrote {path}: {len(table.rows)} rows, {len(table.load_points)} load points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
