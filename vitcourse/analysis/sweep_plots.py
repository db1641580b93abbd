"""Plots of the sweep: accuracy (or throughput) against GFLOPs and parameters, and measured cost.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding,
h heads, d head dim, K classes.

Figures are built with `matplotlib.figure.Figure`, not pyplot: they work headless (no display, the Agg
canvas saves PNGs) and a notebook shows a returned Figure inline. Rows are the dicts of
`vitcourse.analysis.sweep.run_sweep` / `attach_results`.

Public API: plot_tradeoffs(rows), plot_cost(rows). `vitcourse.analysis.sweep` re-exports both.
"""
from __future__ import annotations

import math
from typing import Optional

FAMILY_COLORS = {"ViT P4": "tab:blue", "ViT P8": "tab:orange", "ResNet-18 CIFAR": "tab:green",
                 "ResNet-18 ImageNet": "tab:red"}
DATASET_MARKERS = {"CIFAR-10": "o", "CIFAR-100": "s"}
BUBBLE_AREA = (30.0, 900.0)  # marker area (points²) of the fastest and the slowest epoch
MAX_LABELLED_POINTS = 40  # more labels than this would hide the points
LABEL_FONT_SIZE = 7
BUBBLE_MARGIN = 0.1  # fraction of the data range left free around the points


def _family(row: dict) -> str:
    if row["model"] != "vit":
        return row["name"]
    return f"ViT P{row.get('patch_size')}"


def _bubble_sizes(rows: list[dict]) -> tuple[list[float], Optional[tuple[float, float]]]:
    times = [r.get("epoch_time_s") or r.get("trained_epoch_time_s") for r in rows]
    known = [t for t in times if t]
    if not known:
        return [BUBBLE_AREA[0] * 3] * len(rows), None
    lo, hi = min(known), max(known)
    span = (hi - lo) or 1.0
    small, large = BUBBLE_AREA
    return [small + (large - small) * ((t - lo) / span) if t else small for t in times], (lo, hi)


def _short_label(row: dict) -> str:
    """'P4 D256 L8 h4' for a ViT, 'R18 CIFAR' for ResNet-18: small enough to print next to a point."""
    return row["name"].replace("ViT ", "").replace("ResNet-18 ", "R18 ")


def _scatter(ax, rows, x_key, y_key, x_label, y_label, sizes, log_y=False):
    from matplotlib.ticker import FuncFormatter

    for row, size in zip(rows, sizes):
        ax.scatter(row[x_key], row[y_key], s=size, color=FAMILY_COLORS.get(_family(row), "tab:gray"),
                   marker=DATASET_MARKERS.get(row["dataset"], "D"), alpha=0.6, edgecolors="black", linewidths=0.5)
        if len(rows) <= MAX_LABELLED_POINTS:
            ax.annotate(_short_label(row), (row[x_key], row[y_key]), xytext=(4, 4), textcoords="offset points",
                        fontsize=LABEL_FONT_SIZE, alpha=0.8)
    ax.margins(BUBBLE_MARGIN)  # room for the largest bubble and its label at the edges
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 0.5, 1, 2 rather than 5×10⁻¹
    # Label the minor ticks at 2× and 5× a power of ten only, so a log axis keeps a few readable numbers.
    sparse = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:e}"[0] in "25" else "")
    for axis in (ax.xaxis, ax.yaxis) if log_y else (ax.xaxis,):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(sparse)
    ax.tick_params(which="minor", labelsize=LABEL_FONT_SIZE)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(True, which="both", alpha=0.3)


def _legend(fig, rows, time_range):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=f, markersize=8)
               for f, c in FAMILY_COLORS.items() if any(_family(r) == f for r in rows)]
    handles += [Line2D([], [], marker=m, linestyle="", color="gray", label=d, markersize=8)
                for d, m in DATASET_MARKERS.items() if any(r["dataset"] == d for r in rows)]
    if time_range:
        handles += [Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black",
                           markersize=math.sqrt(area), label=f"{t:.0f} s / epoch")
                    for area, t in zip(BUBBLE_AREA, time_range)]
    fig.legend(handles=handles, loc="outside right center", frameon=False)


def plot_tradeoffs(rows: list[dict]):
    """Accuracy against GFLOPs and against parameters; bubble area = time per epoch.

    Without any accuracy (no training results attached) the y axis shows training throughput instead,
    and the title says so. Returns a matplotlib Figure (no pyplot: works headless and in notebooks).
    """
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("plot_tradeoffs: no rows to plot (run_sweep returned nothing)")
    with_acc = [r for r in rows if r.get("accuracy") is not None]
    if with_acc:
        rows, y_key, y_label = with_acc, "accuracy", "test accuracy (%)"
        title = "Accuracy vs cost (bubble area: time per epoch)"
    elif any(r.get("train_images_per_s") for r in rows):
        rows = [r for r in rows if r.get("train_images_per_s")]
        y_key, y_label = "train_images_per_s", "training throughput (images/s)"
        title = "No training results attached: throughput vs cost (bubble area: time per epoch)"
    else:
        raise ValueError("plot_tradeoffs: rows have neither accuracy nor measurements; run the sweep with "
                         "measurement or attach training results")
    sizes, time_range = _bubble_sizes(rows)
    fig = Figure(figsize=(13, 5), layout="constrained")
    ax_flops, ax_params = fig.subplots(1, 2, sharey=True)
    log_y = y_key != "accuracy"  # throughputs span orders of magnitude; accuracies do not
    _scatter(ax_flops, rows, "gflops", y_key, "forward GFLOPs per image (log)", y_label, sizes, log_y)
    _scatter(ax_params, rows, "params", y_key, "parameters, millions (log)", y_label, sizes, log_y)
    fig.suptitle(title)
    _legend(fig, rows, time_range)
    return fig


def plot_cost(rows: list[dict]):
    """What FLOPs do and do not predict: time per epoch and peak memory against GFLOPs. Returns a Figure."""
    from matplotlib.figure import Figure

    rows = [r for r in rows if r.get("epoch_time_s")]
    if not rows:
        raise ValueError("plot_cost: no measured rows; run the sweep with measure_models=True")
    fig = Figure(figsize=(13, 5), layout="constrained")
    ax_time, ax_mem = fig.subplots(1, 2)
    sizes = [BUBBLE_AREA[0] * 3] * len(rows)
    _scatter(ax_time, rows, "gflops", "epoch_time_s", "forward GFLOPs per image (log)", "time per epoch (s, log)",
             sizes, log_y=True)
    _scatter(ax_mem, rows, "gflops", "peak_memory_mib", "forward GFLOPs per image (log)",
             "peak training memory (MiB, log)", sizes, log_y=True)
    device = rows[0].get("device", "?")
    fig.suptitle(f"Measured cost on {device} (batch {rows[0].get('batch_size')})")
    _legend(fig, rows, None)
    return fig
