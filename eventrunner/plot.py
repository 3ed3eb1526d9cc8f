"""``eventrunner plot LOGDIR [-o FILE.png]``: the metric curves of a run, drawn to a PNG.

Reads ``LOGDIR/metrics.csv`` (written by the CSV logger) and, when there, ``LOGDIR/events.jsonl``
for the best epoch and the selection metric. One panel per metric, one line per loader, the
best epoch marked. Needs matplotlib (extra ``plot``); uses its Agg canvas directly, so the
caller's pyplot state and backend are left alone.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventrunner.checkpoint import atomic_file

PANEL_WIDTH_IN = 5.0
PANEL_HEIGHT_IN = 3.6
TITLE_HEIGHT_IN = 0.5
LEGEND_HEIGHT_IN = 0.4
MAX_COLUMNS = 3
DEFAULT_DPI = 100


@dataclass
class Best:
    """The selected epoch, and which loader's metric selected it."""

    epoch: int
    loader: str | None = None
    metric: str | None = None
    value: float | None = None
    minimize: bool | None = None


def figure_size(num_metrics: int, dpi: int = DEFAULT_DPI) -> tuple[int, int]:
    """Width and height in pixels of the PNG for ``num_metrics`` panels."""
    columns = min(MAX_COLUMNS, max(num_metrics, 1))
    rows = math.ceil(max(num_metrics, 1) / columns)
    return (
        round(columns * PANEL_WIDTH_IN * dpi),
        round((rows * PANEL_HEIGHT_IN + TITLE_HEIGHT_IN + LEGEND_HEIGHT_IN) * dpi),
    )


def _metrics_file(logdir: Path) -> Path:
    if logdir.is_file():
        return logdir
    path = logdir / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: expected the metrics.csv that train(logdir=...) writes "
            f"(CSV logger) in {logdir}"
        )
    return path


def load_best(events_path: Path) -> Best | None:
    """The best epoch recorded in ``events.jsonl`` (None without one)."""
    from plugins.json_logger import read_events

    if not events_path.exists():
        return None
    best = None
    selection: dict[str, Any] = {}
    for record in read_events(events_path):
        if isinstance(record.get("selection"), dict):
            selection = record["selection"]
        if record.get("best_epoch") is not None and record.get("best_valid_metric") is not None:
            best = Best(
                epoch=int(record["best_epoch"]),
                loader=selection.get("loader"),
                metric=selection.get("metric"),
                value=float(record["best_valid_metric"]),
                minimize=selection.get("minimize"),
            )
    return best


def collect(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[int, float]]]:
    """``{metric: {loader: {epoch: value}}}``, metrics and loaders in first-seen order."""
    curves: dict[str, dict[str, dict[int, float]]] = {}
    for row in rows:
        for name, value in row.items():
            if name in ("epoch", "loader"):
                continue
            curves.setdefault(name, {}).setdefault(row["loader"], {})[row["epoch"]] = value
    return curves


def plot_logdir(
    logdir: str | Path, output: str | Path | None = None, dpi: int = DEFAULT_DPI
) -> Path:
    """Draw the run in ``logdir`` to ``output`` (default ``logdir/metrics.png``); returns it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise ImportError(
            "eventrunner plot needs matplotlib: pip install 'eventrunner[plot]'"
        ) from error
    from plugins.csv_logger import read_metrics_csv

    logdir = Path(logdir)
    csv_path = _metrics_file(logdir)
    rows = read_metrics_csv(csv_path)
    curves = collect(rows)
    if not curves:
        raise ValueError(f"{csv_path}: no metric rows to plot (is the run past its first epoch?)")
    best = load_best(csv_path.parent / "events.jsonl")
    output = Path(output) if output is not None else csv_path.parent / "metrics.png"

    width, height = figure_size(len(curves), dpi)
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    columns = min(MAX_COLUMNS, len(curves))
    rows_n = math.ceil(len(curves) / columns)
    axes = figure.subplots(rows_n, columns, squeeze=False)
    loaders = list(dict.fromkeys(row["loader"] for row in rows))
    colours = {loader: f"C{i % 10}" for i, loader in enumerate(loaders)}
    epochs_seen = sorted({row["epoch"] for row in rows})
    marker = "o" if len(epochs_seen) <= 40 else None

    for index, (metric, by_loader) in enumerate(curves.items()):
        ax = axes[index // columns][index % columns]
        for loader, points in by_loader.items():
            xs = sorted(points)
            ax.plot(
                xs,
                [points[x] for x in xs],
                label=loader,
                color=colours[loader],
                marker=marker,
                markersize=3.5,
                linewidth=1.6,
                linestyle="-" if loader.startswith("train") else "--",
            )
        selected = best is not None and metric == best.metric
        title = f"{metric} (selection)" if selected else metric
        ax.set_title(title, fontsize=11, fontweight="bold" if selected else "normal")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # The same epochs on every panel, so panels line up even when a metric starts late.
        ax.set_xlim(epochs_seen[0] - 0.4, epochs_seen[-1] + 0.4)
        ax.margins(y=0.12)  # room for the best-epoch star and its label
        ax.grid(True, alpha=0.3)
        if best is not None:
            ax.axvline(best.epoch, color="0.35", linestyle=":", linewidth=1.2)
            point = by_loader.get(best.loader or "", {}).get(best.epoch)
            if selected and point is not None:
                ax.plot(
                    [best.epoch],
                    [point],
                    marker="*",
                    markersize=14,
                    color="gold",
                    markeredgecolor="black",
                    linestyle="none",
                    zorder=5,
                )
                ax.annotate(
                    f"{point:.4g}",
                    (best.epoch, point),
                    textcoords="offset points",
                    xytext=(6, 8),
                    fontsize=9,
                )
    for index in range(len(curves), rows_n * columns):
        axes[index // columns][index % columns].set_visible(False)

    title = str(csv_path.parent.resolve().name or csv_path.parent)
    if best is not None and best.value is not None:
        goal = "min" if best.minimize else "max" if best.minimize is not None else ""
        title += ("\n" if columns == 1 else "  -  ") + (
            f"best epoch {best.epoch}: {best.loader} {best.metric} = {best.value:.4g}"
            + (f" ({goal})" if goal else "")
        )
    figure.suptitle(title, fontsize=12)
    # One legend for all panels: a loader has the same colour and style everywhere.
    handles = [
        Line2D(
            [],
            [],
            color=colours[loader],
            marker=marker,
            markersize=3.5,
            linestyle="-" if loader.startswith("train") else "--",
            label=loader,
        )
        for loader in loaders
    ]
    if best is not None:
        handles.append(
            Line2D([], [], color="0.35", linestyle=":", label=f"best epoch {best.epoch}")
        )
    figure.legend(
        handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(output) as file:  # a reader never sees half a PNG
        figure.savefig(file, dpi=dpi, format="png")
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """``eventrunner plot LOGDIR [-o FILE.png] [--dpi N]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="eventrunner plot",
        description="Draw a run's metric curves (one panel per metric, a line per loader, "
        "the best epoch marked) from LOGDIR/metrics.csv to a PNG.",
    )
    parser.add_argument("logdir", help="the run's logdir (or its metrics.csv)")
    parser.add_argument("-o", "--output", help="the PNG to write (default: LOGDIR/metrics.png)")
    parser.add_argument(
        "--dpi", type=int, default=DEFAULT_DPI, help="pixels per inch (default: 100)"
    )
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as stop:  # --help, or a usage error argparse already printed
        return int(stop.code or 0)
    if args.dpi < 10:
        print(f"eventrunner plot: --dpi must be >= 10, got {args.dpi}", file=sys.stderr)
        return 2
    try:
        path = plot_logdir(args.logdir, args.output, args.dpi)
    except (OSError, ValueError, ImportError) as error:
        print(f"eventrunner plot: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
