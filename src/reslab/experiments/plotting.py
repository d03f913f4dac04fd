"""The experiments' figures (PNG, matplotlib Agg), drawn from the runs' CSV logs only.

Curves follow the paper's Fig. 6: training error thin and dashed, test error bold, against iterations,
one colour per depth (or per shortcut option), one panel per family (plain | ResNet | highway). Runs that
differ only in seed are averaged point by point.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from reslab.experiments.results import PAPER_TABLE3, PAPER_TABLE6, Group, column

FAMILY_TITLES = {"plain": "plain networks", "resnet": "ResNets", "highway": "highway networks"}
FAMILY_ORDER = ("plain", "highway", "resnet")
VARIANT_COLOURS = {"A": "C0", "B": "C1", "C": "C2", "plain": "C3", "resnet": "C0", "highway": "C1"}
VARIANT_COLOURS |= {"seresnet": "C1", "preact": "C2", "densenet": "C4"}
DEPTH_COLOURS = {20: "C1", 32: "C2", 44: "C0", 56: "C3", 110: "C4", 1202: "C5"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from reslab._io import write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _plt().close(fig)
    write_bytes(path, buf.getvalue())
    return path


def _mean_curve(series: list[tuple[list[float], list[float]]]) -> tuple[list[float], list[float]]:
    """Average curves over seeds at the steps they share (all of one run's steps when there is one)."""
    series = [s for s in series if s[0]]
    if not series:
        return [], []
    if len(series) == 1:
        return series[0]
    common = set(series[0][0])
    for xs, _ in series[1:]:
        common &= set(xs)
    steps = sorted(common)
    maps = [dict(zip(xs, ys)) for xs, ys in series]
    return steps, [sum(m[s] for m in maps) / len(maps) for s in steps]


def _smooth(xs: list[float], ys: list[float], target_points: int = 60) -> tuple[list[float], list[float]]:
    """Moving average over windows of the log, keeping about ``target_points`` points."""
    n = len(ys)
    w = max(1, n // target_points)
    if w == 1:
        return xs, ys
    ox, oy = [], []
    for i in range(0, n - w + 1, w):
        ox.append(xs[i + w - 1])
        oy.append(sum(ys[i : i + w]) / w)
    return ox, oy


def train_curve(group: Group) -> tuple[list[float], list[float]]:
    """Training error against iterations: train_log.csv (smoothed) or else metrics.csv's train_error."""
    series = []
    for r in group.runs:
        xs, ys = column(r.train_log, "error")
        if len(xs) >= 3:
            series.append(_smooth(xs, ys))
        else:
            series.append(column(r.metrics, "train_error"))
    return _mean_curve(series)


def test_curve(group: Group) -> tuple[list[float], list[float]]:
    return _mean_curve(
        [column(r.metrics, "val_error" if r.eval_split == "val" else "test_error") for r in group.runs]
    )


def _draw_curves(ax, groups: list[Group], colour_by: str) -> list[float]:
    seen: list[float] = []
    for g in sorted(groups, key=lambda g: (g.depth, g.variant)):
        colour = DEPTH_COLOURS.get(g.depth) if colour_by == "depth" else VARIANT_COLOURS.get(g.variant)
        name = f"{g.depth}-layer" if colour_by == "depth" else g.label
        tx, ty = train_curve(g)
        sx, sy = test_curve(g)
        if tx:
            ax.plot(tx, ty, ls="--", lw=0.9, color=colour, alpha=0.9)
        if sx:
            ax.plot(sx, sy, lw=2.2, color=colour, label=name, marker="o" if len(sx) <= 12 else None, ms=3)
        elif tx:
            ax.plot([], [], lw=2.2, color=colour, label=name)
        seen += ty[len(ty) // 5 :] + sy
    return seen


def _finish_axes(ax, values: list[float], title: str) -> None:
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    vals = sorted(v for v in values if math.isfinite(v))
    if vals:
        top = vals[int(0.95 * (len(vals) - 1))]
        ax.set_ylim(0, min(100.0, max(5.0, 1.3 * top)))
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="upper right")


def _style_note(fig) -> None:
    fig.text(0.01, 0.005, "dashed: training error, bold: test error", fontsize=7, color="0.35")


def plot_family_panels(groups: list[Group], path: Path, title: str) -> Path:
    """One panel per family (plain, highway, ResNet), one colour per depth: the paper's Fig. 6."""
    plt = _plt()
    families = [f for f in FAMILY_ORDER if any(g.family == f for g in groups)]
    fig, axes = plt.subplots(1, len(families), figsize=(5.2 * len(families), 4.2), sharey=True, squeeze=False)
    allv: list[float] = []
    for ax, fam in zip(axes[0], families):
        allv += _draw_curves(ax, [g for g in groups if g.family == fam], "depth")
    for ax, fam in zip(axes[0], families):
        _finish_axes(ax, allv, FAMILY_TITLES.get(fam, fam))
    fig.suptitle(title, fontsize=11)
    _style_note(fig)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return _save(fig, path)


def plot_depth(groups: list[Group], path: Path, title: str, dataset: str) -> Path:
    """Left: ResNet curves, one colour per depth. Right: final test error (mean ± std) against depth,
    with the paper's Table 6 beside it on CIFAR-10."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    vals = _draw_curves(ax1, groups, "depth")
    _finish_axes(ax1, vals, "ResNets")
    gs = sorted(groups, key=lambda g: g.depth)
    depths = [g.depth for g in gs]
    means = [g.mean("test_error") for g in gs]
    stds = [0.0 if not math.isfinite(g.std("test_error")) else g.std("test_error") for g in gs]
    trains = [g.mean("train_error") for g in gs]
    ax2.errorbar(depths, means, yerr=stds, marker="o", lw=2, capsize=4, color="C0", label="ours: test")
    ax2.plot(depths, trains, marker=".", ls="--", lw=1, color="C0", alpha=0.7, label="ours: training")
    if dataset == "cifar10":
        pd = [d for d in depths if d in PAPER_TABLE6]
        ax2.plot(pd, [PAPER_TABLE6[d] for d in pd], marker="s", lw=1.5, color="0.3", label="paper (Table 6)")
    ax2.set_xscale("log")
    ax2.set_xticks(depths)
    ax2.set_xticklabels([str(d) for d in depths])
    ax2.minorticks_off()
    ax2.set_xlabel("depth (layers)")
    ax2.set_ylabel("final error (%)")
    ax2.set_title(
        "final error vs depth" + (" (mean ± std over seeds)" if any(g.n > 1 for g in gs) else ""), fontsize=10
    )
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    _style_note(fig)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return _save(fig, path)


def plot_shortcuts(groups: list[Group], path: Path, title: str) -> Path:
    """Left: curves per shortcut option (and plain). Right: final test error bars, paper's Table 3 beside."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    vals = _draw_curves(ax1, groups, "variant")
    _finish_axes(ax1, vals, "training curves")
    order = [v for v in ("A", "B", "C", "plain") if any(g.variant == v for g in groups)]
    by = {g.variant: g for g in groups}
    xs = range(len(order))
    means = [by[v].mean("test_error") for v in order]
    stds = [0.0 if not math.isfinite(by[v].std("test_error")) else by[v].std("test_error") for v in order]
    ax2.bar(
        [x - 0.2 for x in xs],
        means,
        width=0.4,
        yerr=stds,
        capsize=3,
        color=[VARIANT_COLOURS[v] for v in order],
        label="ours (test)",
    )
    ax2b = ax2.twinx()
    ax2b.bar(
        [x + 0.2 for x in xs],
        [PAPER_TABLE3.get(v, math.nan) for v in order],
        width=0.4,
        color="0.75",
        label="paper (ImageNet top-1)",
    )
    ax2b.set_ylabel("paper: ImageNet ResNet-34 top-1 error (%)", fontsize=8, color="0.4")
    ax2.set_xticks(list(xs))
    ax2.set_xticklabels([("option " + v) if v != "plain" else "plain" for v in order])
    ax2.set_ylabel("our final test error (%)")
    ax2.set_title("final test error (grey: paper, right axis)", fontsize=10)
    ax2.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=11)
    _style_note(fig)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return _save(fig, path)


def plot_relatives(groups: list[Group], path: Path, title: str) -> Path:
    """Left: curves per network. Right: final test error (mean ± std over seeds) per network."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    vals = _draw_curves(ax1, groups, "variant")
    _finish_axes(ax1, vals, "training curves")
    gs = sorted(groups, key=lambda g: (g.depth, g.variant))
    means = [g.mean("test_error") for g in gs]
    stds = [0.0 if not math.isfinite(g.std("test_error")) else g.std("test_error") for g in gs]
    xs = range(len(gs))
    ax2.bar(list(xs), means, yerr=stds, capsize=3, color=[VARIANT_COLOURS.get(g.variant, "C7") for g in gs])
    ax2.set_xticks(list(xs))
    ax2.set_xticklabels([g.label for g in gs], rotation=20, ha="right", fontsize=8)
    ax2.set_ylabel("final test error (%)")
    ax2.set_title("final test error", fontsize=10)
    ax2.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=11)
    _style_note(fig)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return _save(fig, path)


def plot_experiment(experiment: str, groups: list[Group], out: Path, title: str, dataset: str) -> list[Path]:
    """Draw the experiment's figure(s) into ``out``; returns the paths."""
    path = Path(out) / f"{experiment}.png"
    if experiment == "depth":
        return [plot_depth(groups, path, title, dataset)]
    if experiment == "shortcuts":
        return [plot_shortcuts(groups, path, title)]
    if experiment == "relatives":
        return [plot_relatives(groups, path, title)]
    return [plot_family_panels(groups, path, title)]


def plot_run(run_dir: Path) -> Path:
    """``curves.png`` of one run directory (the training engine's own plot)."""
    from reslab.train.plots import plot_curves

    run_dir = Path(run_dir)
    return plot_curves(run_dir, run_dir / "curves.png", title=run_dir.name)
