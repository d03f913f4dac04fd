"""The experiments' figures (PNG, matplotlib Agg), drawn from the runs' CSV logs only.

Curves follow the paper's Fig. 6: training error thin and dashed, test error bold, against iterations,
one colour per depth (or per shortcut option), one panel per family (plain | ResNet | highway). Runs that
differ only in seed are averaged point by point, with a shaded band from the seeds' minimum to maximum;
summary panels (error against depth, per shortcut option) draw the same range as error bars. Vertical
dotted lines mark the iterations where a step schedule divides the learning rate by 10 (the paper's 32k
and 48k). The y-range holds every test point (the first evaluations of a deep plain net included).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from reslab.experiments.paper import PAPER_TABLE3, PAPER_TABLE6
from reslab.experiments.results import Group, column

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


Curve = tuple[list[float], list[float], list[float], list[float]]  # steps, mean, min, max over seeds


def _mean_curve(series: list[tuple[list[float], list[float]]]) -> Curve:
    """Mean, minimum and maximum over seeds at the steps every seed has (one run: its own steps)."""
    series = [s for s in series if s[0]]
    if not series:
        return [], [], [], []
    if len(series) == 1:
        xs, ys = series[0]
        return list(xs), list(ys), list(ys), list(ys)
    common = set(series[0][0])
    for xs, _ in series[1:]:
        common &= set(xs)
    steps = sorted(common)
    maps = [dict(zip(xs, ys)) for xs, ys in series]
    cols = [[m[s] for m in maps] for s in steps]
    return steps, [sum(c) / len(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols]


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


def train_curve(group: Group) -> Curve:
    """Training error against iterations: train_log.csv (smoothed) or else metrics.csv's train_error."""
    series = []
    for r in group.runs:
        xs, ys = column(r.train_log, "error")
        if len(xs) >= 3:
            series.append(_smooth(xs, ys))
        else:
            series.append(column(r.metrics, "train_error"))
    return _mean_curve(series)


def test_curve(group: Group) -> Curve:
    return _mean_curve(
        [column(r.metrics, "val_error" if r.eval_split == "val" else "test_error") for r in group.runs]
    )


def _draw_curves(ax, groups: list[Group], colour_by: str) -> list[float]:
    """Mean curves with min–max bands; returns the values the y-range must hold."""
    seen: list[float] = []
    for g in sorted(groups, key=lambda g: (g.depth, g.variant)):
        colour = DEPTH_COLOURS.get(g.depth) if colour_by == "depth" else VARIANT_COLOURS.get(g.variant)
        name = f"{g.depth}-layer" if colour_by == "depth" else g.label
        drawn = sum(
            1 for r in g.runs if column(r.metrics, "val_error" if r.eval_split == "val" else "test_error")[0]
        )
        if g.n > 1:  # say how many seeds the curve holds when some have not been evaluated yet
            name += f" ({g.n} seeds)" if drawn == g.n else f" ({drawn} of {g.n} seeds)"
        tx, ty, tlo, thi = train_curve(g)
        sx, sy, slo, shi = test_curve(g)
        if tx:
            ax.plot(tx, ty, ls="--", lw=0.9, color=colour, alpha=0.9)
            if g.n > 1:
                ax.fill_between(tx, tlo, thi, color=colour, alpha=0.08, lw=0)
        if sx:
            ax.plot(sx, sy, lw=2.2, color=colour, label=name, marker="o" if len(sx) <= 12 else None, ms=3)
            if g.n > 1:
                ax.fill_between(sx, slo, shi, color=colour, alpha=0.22, lw=0)
        elif tx:
            ax.plot([], [], lw=2.2, color=colour, label=name)
        seen += thi[len(thi) // 5 :] + shi
    return seen


def lr_drops(groups: list[Group]) -> list[float]:
    """Iterations where a step schedule divides the learning rate (the runs' ``milestones``)."""
    return sorted({m for g in groups for r in g.runs for m in r.lr_drops})


def _finish_axes(ax, values: list[float], title: str, drops: list[float] = ()) -> None:
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_ylim(0, y_top(values))
    for i, m in enumerate(drops):
        ax.axvline(m, color="0.4", ls=":", lw=1, label="lr ÷ 10" if i == 0 else None)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="upper right")


def y_top(values: list[float]) -> float:
    """The top of the error axis: above every value given (test points, the training curves after
    their first fifth), with 8% headroom, at least 5% and at most 100%."""
    vals = [v for v in values if math.isfinite(v)]
    return min(100.0, max(5.0, 1.08 * max(vals))) if vals else 100.0


def _style_note(fig) -> None:
    fig.text(
        0.01,
        0.005,
        "dashed: training error, bold: test error; shaded: seeds' min–max",
        fontsize=7,
        color="0.35",
    )


def seed_range_err(groups: list[Group]) -> list[list[float]]:
    """Asymmetric error bars (below, above the mean) reaching the seeds' min and max of test error."""
    lo, hi = [], []
    for g in groups:
        m, (a, b) = g.mean("test_error"), g.range("test_error")
        lo.append(m - a if math.isfinite(a) else 0.0)
        hi.append(b - m if math.isfinite(b) else 0.0)
    return [lo, hi]


def plot_family_panels(groups: list[Group], path: Path, title: str, dataset: str) -> Path:
    """One panel per family (plain, highway, ResNet), one colour per depth: the paper's Fig. 6.

    Every experiment's figure takes ``(groups, path, title, dataset)``
    (:attr:`reslab.experiments.specs.Experiment.plot`); ``dataset`` says whether the paper's numbers are
    comparable enough to draw (those on CIFAR-10)."""
    plt = _plt()
    families = [f for f in FAMILY_ORDER if any(g.family == f for g in groups)]
    width = max(5.2 * len(families), 8.0)  # one panel: wide enough for the title
    fig, axes = plt.subplots(1, len(families), figsize=(width, 4.2), sharey=True, squeeze=False)
    allv: list[float] = []
    for ax, fam in zip(axes[0], families):
        allv += _draw_curves(ax, [g for g in groups if g.family == fam], "depth")
    drops = lr_drops(groups)
    for ax, fam in zip(axes[0], families):
        _finish_axes(ax, allv, FAMILY_TITLES.get(fam, fam), drops)
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
    _finish_axes(ax1, vals, "ResNets", lr_drops(groups))
    gs = sorted(groups, key=lambda g: g.depth)
    depths = [g.depth for g in gs]
    means = [g.mean("test_error") for g in gs]
    trains = [g.mean("train_error") for g in gs]
    ax2.errorbar(
        depths, means, yerr=seed_range_err(gs), marker="o", lw=2, capsize=4, color="C0", label="ours: test"
    )
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
        "final error vs depth" + (" (mean, bars: seed min–max)" if any(g.n > 1 for g in gs) else ""),
        fontsize=10,
    )
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    _style_note(fig)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return _save(fig, path)


def plot_shortcuts(groups: list[Group], path: Path, title: str, dataset: str) -> Path:
    """Left: curves per shortcut option (and plain). Right: final test error bars, paper's Table 3 beside."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    vals = _draw_curves(ax1, groups, "variant")
    _finish_axes(ax1, vals, "training curves", lr_drops(groups))
    order = [v for v in ("A", "B", "C", "plain") if any(g.variant == v for g in groups)]
    by = {g.variant: g for g in groups}
    xs = range(len(order))
    means = [by[v].mean("test_error") for v in order]
    ax2.bar(
        [x - 0.2 for x in xs],
        means,
        width=0.4,
        yerr=seed_range_err([by[v] for v in order]),
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
    ax2.set_title(
        "final test error (grey: paper, right axis"
        + ("; bars: seed min–max)" if any(by[v].n > 1 for v in order) else ")"),
        fontsize=10,
    )
    ax2.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=11)
    _style_note(fig)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return _save(fig, path)


def plot_relatives(groups: list[Group], path: Path, title: str, dataset: str) -> Path:
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


def plot_run(run_dir: Path) -> Path:
    """``curves.png`` of one run directory (the training engine's own plot)."""
    from reslab.train.plots import plot_curves

    run_dir = Path(run_dir)
    return plot_curves(run_dir, run_dir / "curves.png", title=run_dir.name)
