"""Figures and a markdown summary of a hardware cost table, in the shape of the OASIS paper's.

    python -m profiling_jobs.report OUT/hct.parquet [--out OUT/report]

Writes clock_effects.png (SM clock against power, MSRR throughput and energy
per token), msrr_by_query_type.png (MSRR per query type and engine
configuration), latency_vs_concurrency.png (P95 latency of every measured
load point, with the SLO line and the MSRR point marked) and summary.md.

The table goes through `load_hct`, so a report is only ever drawn from a
table that passed schema validation. A figure whose data the table lacks (no
GPU clocks in a CPU sweep) is still written, stating what is missing, so a
reader never mistakes an empty plot for a flat result.

Exit status: 0 with the files' paths printed; 2 when the table is refused.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import StrMethodFormatter

from oasis_ray.profiling.hct import HardwareCostTable, HctError, load_hct

FIGURE_DPI = 130
CONFIG_COLUMNS = ["model_id", "hardware", "max_num_seqs", "variant"]


def _config_label(row: pd.Series, with_model: bool) -> str:
    model = f"{row['model_id']} | " if with_model else ""
    return f"{model}{row['hardware']} | batch {row['max_num_seqs']} | {row['variant']}"


def _labelled(rows: pd.DataFrame) -> pd.DataFrame:
    with_model = rows["model_id"].nunique() > 1
    return rows.assign(config=rows.apply(_config_label, axis=1, with_model=with_model))


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=10, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])


def clock_effects_figure(table: HardwareCostTable) -> Figure:
    rows = _labelled(table.rows[table.rows["status"] == "ok"])
    rows = rows.assign(clock=rows["clock_mhz"].astype("Float64").fillna(rows["sm_clock_mhz"]))
    rows = rows[rows["clock"].notna()]
    panels = [
        ("mean_power_w", "mean power (W)"),
        ("msrr_output_tokens_per_s", "throughput at MSRR (tokens/s)"),
        ("energy_per_token_j", "energy per output token (J)"),
    ]
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    axes = fig.subplots(1, len(panels))
    fig.suptitle("SM clock against power, throughput and energy per token (at each trial's MSRR)")
    if rows.empty:
        for ax, (_, title) in zip(axes, panels, strict=True):
            ax.set_title(title)
            _note(ax, "no GPU clock readings in this table\n(CPU or MIG trials only)")
        return fig
    for ax, (column, title) in zip(axes, panels, strict=True):
        for (config, qtype), series in rows.groupby(["config", "query_type"]):
            series = series.sort_values("clock")
            ax.plot(series["clock"], series[column], marker="o", label=f"{qtype} | {config}")
        ax.set_title(title)
        ax.set_xlabel("SM clock (MHz; locked where asked, else observed)")
        ax.grid(alpha=0.3)
        if rows[column].isna().all():
            _note(ax, "not measured: no power meter on these devices")
    axes[0].legend(fontsize=7, loc="best")
    return fig


def msrr_figure(table: HardwareCostTable) -> Figure:
    """One panel per query type, each on its own scale: MSRRs of long- and short-output types differ tenfold."""
    rows = _labelled(table.rows)
    qtypes = sorted(rows["query_type"].unique())
    configs = list(dict.fromkeys(rows["config"]))
    fig = Figure(figsize=(max(7.0, 4.2 * len(qtypes)), 5.2), layout="constrained")
    axes = fig.subplots(1, len(qtypes), squeeze=False)[0]
    fig.suptitle(
        f"Maximum serviceable request rate (P95 end-to-end ≤ {table.metadata.slo.p95_e2e_s:g} s)\n"
        "≥ marks a search that reached max_concurrency: the true MSRR may be higher"
    )
    for ax, qtype in zip(axes, qtypes, strict=True):
        of_type = rows[rows["query_type"] == qtype]
        for _, row in of_type.iterrows():
            x = configs.index(row["config"])
            if row["status"] != "ok":
                ax.text(x, 0, "failed", rotation=90, ha="center", va="bottom", fontsize=9, color="firebrick")
                continue
            ax.bar(x, row["msrr_req_s"], 0.8, color=f"C{x}")
            marker = "≥" if row["msrr_capped"] else ""
            ax.text(x, row["msrr_req_s"], f"{marker}{row['msrr_req_s']:.1f}", ha="center", va="bottom", fontsize=9)
        first = of_type.iloc[0]
        ax.set_title(f"{qtype} ({first['input_tokens']} in / {first['output_tokens']} out)")
        ax.set_xticks([])
        ax.set_xlim(-0.6, len(configs) - 0.4)
        ax.set_ylabel("MSRR (requests/s)")
        ax.grid(axis="y", alpha=0.3)
    handles = [Rectangle((0, 0), 1, 1, color=f"C{i}") for i in range(len(configs))]
    fig.legend(
        handles,
        configs,
        loc="outside lower center",
        ncols=min(3, len(configs)),
        fontsize=8,
        title="engine configuration",
        title_fontsize=8,
    )
    return fig


def latency_figure(table: HardwareCostTable) -> Figure:
    rows = _labelled(table.rows[table.rows["status"] == "ok"])
    points = table.load_points.merge(rows[["trial_id", "config", "query_type", "msrr_concurrency"]], on="trial_id")
    qtypes = sorted(points["query_type"].unique())
    slo = table.metadata.slo.p95_e2e_s
    fig = Figure(figsize=(6.5 * max(1, len(qtypes)), 4.8), layout="constrained")
    axes = fig.subplots(1, max(1, len(qtypes)), squeeze=False)
    fig.suptitle("P95 end-to-end latency against closed-loop concurrency (★ = the MSRR point)")
    if points.empty:
        _note(axes[0][0], "no load points in this table")
        return fig
    configs = list(dict.fromkeys(rows["config"]))
    for ax, qtype in zip(axes[0], qtypes, strict=True):
        for config, series in points[points["query_type"] == qtype].groupby("config", sort=False):
            series = series.sort_values("concurrency")
            color = f"C{configs.index(config)}"
            ax.plot(series["concurrency"], series["e2e_p95_s"], marker="o", color=color, label=config)
            best = series[series["concurrency"] == series["msrr_concurrency"]]
            ax.plot(best["concurrency"], best["e2e_p95_s"], marker="*", markersize=16, color=color, linestyle="none")
        ax.axhline(slo, color="firebrick", linestyle="--", label=f"SLO: P95 ≤ {slo:g} s")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        ax.set_title(qtype)
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel("P95 end-to-end latency (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def _cell(value: object, digits: int = 2) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _summary_row(row: pd.Series) -> str:
    msrr = "failed" if row["status"] != "ok" else ("≥" if row["msrr_capped"] else "") + _cell(row["msrr_req_s"])
    cells = [
        str(row["model_id"]),
        str(row["hardware"]),
        _cell(row["clock_mhz"]),
        "yes" if row["clock_locked"] else "no",
        str(row["max_num_seqs"]),
        str(row["variant"]),
        f"{row['query_type']} ({row['input_tokens']}/{row['output_tokens']})",
        msrr,
        _cell(row["msrr_output_tokens_per_s"], 1),
        _cell(row["msrr_concurrency"]),
        _cell(row["e2e_p95_s"], 3),
        _cell(row["ttft_p95_s"], 3),
        _cell(row["mean_power_w"], 1),
        _cell(row["energy_per_token_j"], 4),
        _cell(row["load_points"]),
    ]
    return "| " + " | ".join(cells) + " |"


def summary_markdown(table: HardwareCostTable, figures: list[str]) -> str:
    meta = table.metadata
    lines = [
        f"# Hardware cost table: {meta.spec_name}",
        "",
        f"- spec hash `{meta.spec_hash}`, {meta.sweep_mode} sweep, written {meta.created_at}",
        f"- SLO: P95 end-to-end ≤ {meta.slo.p95_e2e_s:g} s"
        + (f", P95 TTFT ≤ {meta.slo.p95_ttft_s:g} s" if meta.slo.p95_ttft_s else "")
        + (f", P95 TPOT ≤ {meta.slo.p95_tpot_s:g} s" if meta.slo.p95_tpot_s else ""),
        f"- search: {meta.search.mode}, tolerance {meta.search.tolerance:g}, "
        f"max concurrency {meta.search.max_concurrency}",
        f"- devices: {', '.join(meta.device_names) or 'CPU only'}; driver {', '.join(meta.driver_versions) or 'n/a'}",
        f"- vLLM {meta.vllm_version}, Ray {meta.ray_version}, oasis-ray {meta.oasis_ray_version}, "
        f"Python {meta.python_version}",
        f"- {meta.trials} trials, {meta.failed_trials} failed",
        "",
        "| model | hardware | clock MHz | locked | batch | variant | query | MSRR req/s | MSRR tok/s | at conc. "
        "| P95 e2e s | P95 TTFT s | power W | J/token | points |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_summary_row(row) for _, row in table.rows.iterrows()]
    failed = table.rows[table.rows["status"] != "ok"]
    if not failed.empty:
        lines += ["", "## Failed trials", ""]
        lines += [
            f"- `{row['trial_id']}` ({row['query_type']}, {row['hardware']}): {row['error']}"
            for _, row in failed.iterrows()
        ]
    if not table.rows["power_available"].all():
        notes = sorted(set(table.rows.loc[~table.rows["power_available"], "power_note"].dropna()))
        lines += ["", f"Power n/a means not measured ({'; '.join(notes)}), never zero."]
    lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def write_report(table: HardwareCostTable, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in (
        ("clock_effects.png", clock_effects_figure),
        ("msrr_by_query_type.png", msrr_figure),
        ("latency_vs_concurrency.png", latency_figure),
    ):
        build(table).savefig(out_dir / name, dpi=FIGURE_DPI)
        written.append(out_dir / name)
    summary = out_dir / "summary.md"
    summary.write_text(summary_markdown(table, [path.name for path in written]))
    return [*written, summary]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hct", type=Path, help="hct.parquet, hct.csv or the sweep's output directory")
    parser.add_argument("--out", type=Path, default=None, help="default: a 'report' folder beside the table")
    args = parser.parse_args(argv)
    try:
        table = load_hct(args.hct)
    except HctError as error:
        print(error, file=sys.stderr)
        return 2
    table_dir = args.hct if args.hct.is_dir() else args.hct.parent
    for path in write_report(table, args.out or table_dir / "report"):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
