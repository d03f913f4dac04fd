"""The experiments' figures (PNG, matplotlib Agg), drawn from the runs' CSV logs only, in the project's
one style (:mod:`reslab.figstyle`: a colour per network, the same in every figure).

Each figure has two rows. Above, error against iterations on a log axis that holds every point: training
error dashed, test error solid with a marker at each evaluation; runs that differ only in seed are
averaged point by point, with a shaded band from the seeds' minimum to maximum. Below, the final errors
with each seed a dot and the mean a bar, on an axis fitted to the data: a difference the seeds do not
support shows as their overlap. Where the final errors span more than a factor of three (a plain-110
at 70% beside ResNets at 7%), that panel has a log axis and a twin zooms on the best family. The
paper's numbers are drawn only on an axis of the same data set and units. Legends stand right of the
panels, never over data. :func:`caption` says all this for report.md, with what each figure adds and
the differences the report's tests find not significant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reslab import figstyle
from reslab.experiments.paper import PAPER_TABLE6
from reslab.experiments.results import Group, column

if TYPE_CHECKING:
    from reslab.experiments.evidence import Claim

FAMILY_TITLES = {"plain": "plain networks", "resnet": "ResNets", "highway": "highway networks"}
FAMILY_ORDER = ("plain", "highway", "resnet")

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


def _eval_column(r: Any) -> tuple[list[float], list[float]]:
    return column(r.metrics, "val_error" if r.eval_split == "val" else "test_error")


def test_curve(group: Group) -> Curve:
    return _mean_curve([_eval_column(r) for r in group.runs])


def lr_drops(groups: list[Group]) -> list[float]:
    """Iterations where a step schedule divides the learning rate (the runs' ``milestones``)."""
    return sorted({m for g in groups for r in g.runs for m in r.lr_drops})


# ------------------------------------------------------------------------------------ the pieces


def draw_curves(ax: Any, groups: list[Group], kinds: tuple[str, ...] = ("train", "test")) -> list[float]:
    """Mean curves with min–max bands, each network in its colour; returns every value drawn."""
    seen: list[float] = []
    for g in groups:
        c, m = figstyle.colour(g.variant, g.depth), figstyle.marker(g.variant)
        for kind in kinds:
            xs, ys, lo, hi = train_curve(g) if kind == "train" else test_curve(g)
            if not xs:
                continue
            if kind == "train":
                ax.plot(xs, ys, color=c, **figstyle.TRAIN_STYLE)
            else:
                ax.plot(xs, ys, color=c, marker=m if len(xs) <= 12 else None, **figstyle.TEST_STYLE)
            if g.n > 1:
                ax.fill_between(xs, lo, hi, color=c, alpha=0.12 if kind == "train" else 0.18, lw=0)
            seen += ys + lo + hi
    return seen


def _network_label(g: Group) -> str:
    """The legend's name of a network, with how many of its seeds the curves hold."""
    if g.n == 1:
        return g.label
    drawn = _seeds_drawn(g)
    return g.label + (f" ({g.n} seeds)" if drawn == g.n else f" ({drawn} of {g.n} seeds)")


def _seeds_drawn(g: Group) -> int:
    """How many of a network's runs have been evaluated (the others are planned, not started)."""
    return sum(1 for r in g.runs if _eval_column(r)[0])


def _handles(groups: list[Group], drops: list[float], paper: str = "", context: str = "") -> list[Any]:
    """The figure's legend: one entry per network, then what lines, bands, dots and bars are; ``context``:
    the label of the grey curves behind each panel's own (:data:`CONTEXT`), after the curves' entries."""
    from matplotlib.lines import Line2D

    nets = [
        Line2D([], [], color=figstyle.colour(g.variant, g.depth), marker=figstyle.marker(g.variant),
               **figstyle.TEST_STYLE, label=_network_label(g))
        for g in groups
    ]  # fmt: skip
    out = [*nets, Line2D([], [], ls="", label=" ")]
    out += figstyle.curve_handles(any(g.n > 1 for g in groups))
    if context:
        out.append(Line2D([], [], label=context, **CONTEXT))
    if drops:
        out.append(Line2D([], [], color="0.4", ls=":", lw=1, label="lr ÷ 10"))
    return out + figstyle.final_error_handles(paper=paper)


def _curve_row(
    fig: Any,
    spec: Any,
    panels: list[tuple[str, list[Group], tuple[str, ...]]],
    drops: list[float],
    context: list[Group] | None = None,
) -> None:
    """One row of curve panels (title, networks, "train"/"test") sharing one log error axis;
    ``context``: networks whose mean curves are drawn thin and grey behind each panel's own (small
    multiples: one network in colour, the others for comparison)."""
    axes, seen = [], []
    for i, (title, gs, kinds) in enumerate(panels):
        ax = fig.add_subplot(spec[0, i], sharex=axes[0] if axes else None, sharey=axes[0] if axes else None)
        for g in [g for g in context or [] if g not in gs]:
            _grey_curves(ax, g, kinds)
        seen += draw_curves(ax, gs, kinds)
        for m in drops:
            ax.axvline(m, color="0.4", ls=":", lw=1)
        ax.set_title(title)
        ax.set_xlabel("iterations")
        axes.append(ax)
    figstyle.log_error_axis(axes[0], seen)
    for ax in axes[1:]:
        ax.set_ylabel("")
        ax.tick_params(labelleft=False)


CONTEXT = {"color": "0.72", "lw": 0.8, "zorder": 1}  # another network's mean curve, behind a panel's own


def _grey_curves(ax: Any, g: Group, kinds: tuple[str, ...]) -> None:
    """``g``'s mean curves (training dashed, test solid) thin and grey, no band: context, not data."""
    for kind in kinds:
        xs, ys, _, _ = train_curve(g) if kind == "train" else test_curve(g)
        ax.plot(xs, ys, ls=figstyle.TRAIN_STYLE["ls"] if kind == "train" else "-", **CONTEXT)


def _final_row(
    fig: Any, spec: Any, panels: list[tuple[str, list[Group]]], paper: dict[int, float] | None = None
) -> None:
    """One row of final-error panels (title, networks), each on an axis of its own (a log one where the
    errors span more than a factor of three); ``paper``: values on the same axis (network index -> %)."""
    for i, (title, gs) in enumerate(panels):
        ax = fig.add_subplot(spec[0, i])
        slant = len(gs) * len(panels) > 6
        figstyle.final_error_panel(ax, gs, log=_wants_log(gs), paper=paper, slant=slant)
        ax.set_title(title)


def _wants_log(groups: list[Group]) -> bool:
    return figstyle.wants_log([v for g in groups for a, _ in figstyle.FINAL_ERRORS for v in g.values(a)])


def _final_panels(title: str, groups: list[Group]) -> list[tuple[str, list[Group]]]:
    """``groups``' final-error panel; where it needs a log axis, a second panel zooms on the family with
    the lowest test error, on a linear axis."""
    if not _wants_log(groups):
        return [(title, groups)]
    best = min(
        {g.family for g in groups}, key=lambda f: min(g.mean("test_error") for g in groups if g.family == f)
    )
    zoom = [g for g in groups if g.family == best]
    return [(f"{title} (log axis)", groups), (f"{FAMILY_TITLES.get(best, best)} only (linear axis)", zoom)]


def _rows(n_top: int, n_bottom: int, width: float = 10.0, height: float = 6.6) -> tuple[Any, Any, Any]:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), layout="constrained")
    outer = fig.add_gridspec(2, 1, height_ratios=(1.0, 1.0))
    return fig, outer[0].subgridspec(1, n_top), outer[1].subgridspec(1, n_bottom)


def _finish(fig: Any, title: str, handles: list[Any]) -> Any:
    fig.suptitle(title, fontsize=10.5)
    figstyle.legend_outside(fig, handles)
    return fig


def _iterations(groups: list[Group]) -> str:
    steps = max((r.steps for g in groups for r in g.runs), default=0)
    return f" at iteration {steps:,}" if steps else ""


# ----------------------------------------------------------------------------------- the figures


@dataclass(frozen=True)
class Figure:
    """An experiment's figure: ``draw(groups, title, dataset)`` makes it, ``notes(groups, dataset)`` says
    what its panels show beyond the house style (for :func:`caption`). Called as an
    :attr:`~reslab.experiments.specs.Experiment.plot`: ``plot(groups, path, title, dataset) -> path``."""

    draw: Callable[[list[Group], str, str], Any]
    notes: Callable[[list[Group], str], list[str]]

    def __call__(self, groups: list[Group], path: Path, title: str, dataset: str) -> Path:
        with figstyle.style():
            return figstyle.save(self.draw(groups, title, dataset), path)


def _by_depth(groups: list[Group]) -> list[Group]:
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    return sorted(groups, key=lambda g: (g.depth, rank.get(g.family, 9), g.variant))


def _family_figure(groups: list[Group], title: str, dataset: str) -> Any:
    """The paper's Fig. 6: one curve panel per family (plain, highway, ResNet), each depth in its shade;
    below, every network's final errors, side by side at each depth."""
    families = [f for f in FAMILY_ORDER if any(g.family == f for g in groups)]
    finals = _final_panels("final errors" + _iterations(groups), _by_depth(groups))
    fig, top, bottom = _rows(len(families), len(finals))
    panels = [(FAMILY_TITLES.get(f, f) + ": training and test error", [g for g in _by_depth(groups) if g.family == f],
               ("train", "test")) for f in families]  # fmt: skip
    _curve_row(fig, top, panels, lr_drops(groups))
    _final_row(fig, bottom, finals)
    return _finish(fig, title, _handles(_by_depth(groups), lr_drops(groups)))


def _family_notes(groups: list[Group], dataset: str) -> list[str]:
    return ["One upper panel per family, each depth a shade of the family's colour."]


def _depth_figure(groups: list[Group], title: str, dataset: str) -> Any:
    """ResNets of every depth: one curve panel per depth (small multiples: the depths' curves lie within a
    point of each other, so on one axis they merge into one line), that depth's training and test error
    in its colour over the other depths' means in grey; below, the final errors per depth (no line joins
    the depths); the paper's Table 6 beside the test errors on CIFAR-10 only."""
    gs = sorted(groups, key=lambda g: g.depth)
    fig, top, bottom = _rows(len(gs), 1, width=12.5, height=6.8)
    panels = [(f"{g.label}:\ntraining and test error", [g], ("train", "test")) for g in gs]
    _curve_row(fig, top, panels, lr_drops(groups), context=gs)
    paper = {i: PAPER_TABLE6[g.depth] for i, g in enumerate(gs) if g.depth in PAPER_TABLE6}
    paper = paper if dataset == "cifar10" else None
    _final_row(fig, bottom, [("final errors per depth" + _iterations(gs), gs)], paper)
    paper_label = "paper, Table 6 (CIFAR-10)" if paper else ""
    return _finish(fig, title, _handles(gs, lr_drops(groups), paper_label, "the other depths (mean)"))


def _depth_notes(groups: list[Group], dataset: str) -> list[str]:
    panels = (
        "One upper panel per depth, on one shared axis: that depth's curves in its colour, the other depths' "
        "mean curves thin and grey behind them."
    )
    if dataset == "cifar10":
        return [
            panels,
            "Grey diamonds: the paper's Table 6 (CIFAR-10 test error at the full 64k-iteration schedule).",
        ]
    return [
        panels,
        f"The paper's Table 6 is not drawn: it is CIFAR-10 test error, ours {dataset}; it is in the table.",
    ]


def _one_family_figure(order: tuple[str, ...]) -> Callable[[list[Group], str, str], Any]:
    """Networks at one depth (shortcut options, ResNet's relatives): training and test curves in panels
    of their own, then the final errors, the networks in ``order`` (their variants)."""

    def draw(groups: list[Group], title: str, dataset: str) -> Any:
        rank = {v: i for i, v in enumerate(order)}
        gs = sorted(groups, key=lambda g: (rank.get(g.variant, 9), g.depth))
        finals = _final_panels("final errors" + _iterations(gs), gs)  # two where the errors need a log axis
        fig, top, bottom = _rows(2, len(finals))
        panels = [
            ("training error while training", gs, ("train",)),
            ("test error at each evaluation", gs, ("test",)),
        ]
        _curve_row(fig, top, panels, lr_drops(groups))
        _final_row(fig, bottom, finals)
        return _finish(fig, title, _handles(gs, lr_drops(groups)))

    return draw


def _shortcuts_notes(groups: list[Group], dataset: str) -> list[str]:
    return [
        "The paper's Table 3 (ImageNet ResNet-34 top-1 error; plain-34 from Table 2) is not drawn: another data "
        "set and network, another scale; it is in the table, and the claims compare only the ordering."
    ]


def _relatives_notes(groups: list[Group], dataset: str) -> list[str]:
    return ["The papers' CIFAR-10 numbers are not drawn (another data set); they are in the table."]


def _highway_figure(groups: list[Group], title: str, dataset: str) -> Any:
    """One column per depth, the three families (plain, highway, ResNet) on one axis in each: curves
    above, final errors below, so each claim across families at one depth is read on a shared axis."""
    depths = sorted({g.depth for g in groups})
    fig, top, bottom = _rows(len(depths), len(depths))
    at = {d: [g for g in _by_depth(groups) if g.depth == d] for d in depths}
    _curve_row(fig, top, [(f"depth {d}: training and test error", at[d], ("train", "test")) for d in depths],
               lr_drops(groups))  # fmt: skip
    _final_row(fig, bottom, [(f"depth {d}: final errors" + _iterations(at[d]), at[d]) for d in depths])
    return _finish(fig, title, _handles(_by_depth(groups), lr_drops(groups)))


def _highway_notes(groups: list[Group], dataset: str) -> list[str]:
    return [
        "Columns: one depth each, the three families on one axis; the two final-error panels have axes of "
        "their own, so a change with depth is read from the numbers, not across panels."
    ]


plot_family_panels = Figure(_family_figure, _family_notes)
plot_depth = Figure(_depth_figure, _depth_notes)
plot_shortcuts = Figure(_one_family_figure(("A", "B", "C", "plain")), _shortcuts_notes)
plot_highway = Figure(_highway_figure, _highway_notes)
plot_relatives = Figure(_one_family_figure(("resnet", "seresnet", "preact", "densenet")), _relatives_notes)


# -------------------------------------------------------------------------------------- captions


def caption(plot: Any, groups: list[Group], dataset: str, claims: list[Claim]) -> str:
    """What report.md says under an experiment's figure: the house style's panels, what the bands, dots
    and bars are, the figure's own notes, and which differences the report's tests find not significant."""
    seeds = sorted({_seeds_drawn(g) for g in groups}) or [1]
    n = f"{seeds[0]} seeds" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]} seeds, as the legend says,"
    band = (
        f"the shaded band spans the seeds' minimum to maximum ({n} per network)"
        if seeds[-1] > 1
        else "one run per network, so no band"
    )
    parts = [
        "Upper panels: error against iterations on a log axis that holds every point; dashed: training error "
        "(the runs' `train_log.csv`, smoothed), solid with a marker at each evaluation: test error "
        f"(`metrics.csv`); each line is the mean over a network's seeds, {band}. Lower panels: each seed's final error as a dot (hollow: training, "
        "filled: test), a bar at the seeds' mean; no line joins networks, and the axis is fitted to the dots."
    ]
    if _wants_log(groups):
        parts.append(
            "A final-error panel whose errors span more than a factor of three has a log axis, and a panel "
            "beside it shows the best family on a linear axis."
        )
    notes = getattr(plot, "notes", None)
    parts += notes(groups, dataset) if notes else []
    if lr_drops(groups):
        parts.append("Vertical dotted lines: the learning rate is divided by 10.")
    parts += _not_significant(claims)
    return " ".join(parts)


def _not_significant(claims: list[Claim]) -> list[str]:
    from reslab.analysis.stats import ALPHA
    from reslab.experiments.evidence import format_p

    weak = [c for c in claims if math.isfinite(c.p) and not c.p_holm < ALPHA]
    if not weak:
        return []
    items = "; ".join(f"“{c.claim}” (Holm-adjusted {format_p(c.p_holm)})" for c in weak)
    return [f"By the report's tests (Claims below) these differences are not significant: {items}."]


def plot_run(run_dir: Path) -> Path:
    """``curves.png`` of one run directory (the training engine's own plot)."""
    from reslab.train.plots import plot_curves

    run_dir = Path(run_dir)
    return plot_curves(run_dir, run_dir / "curves.png", title=run_dir.name)
