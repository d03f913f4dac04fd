"""The experiments' figures keep the project's one style (issue 30, "figures a reader can trust"): a colour
per network, the same in every figure; no twin axes; legends off the data; every seed's final error a
dot, no line joining networks; curve axes that clip no point; captions that say what bands, dots and
bars are and which differences are not significant. Checked on the drawn matplotlib figures of every
experiment, from fake CSV logs of two seeds per network."""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex

from reslab.experiments import figstyle, plan_experiment, plotting, redraw
from reslab.experiments.evidence import Claim
from reslab.experiments.plan import write_plan
from reslab.experiments.report import collect
from reslab.experiments.results import group_runs
from reslab.experiments.specs import EXPERIMENTS
from test_experiments import _fake_runs


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> dict[str, tuple[object, list]]:
    """Each experiment's figure (not yet closed) and its groups: every default depth, two seeds."""
    out = {}
    for name, exp in EXPERIMENTS.items():
        root = tmp_path_factory.mktemp(name)
        plan = plan_experiment(name, budget="quick", seeds=2, out=root / name, depths=exp.default_depths)
        write_plan(plan, [{"wall_s": 1.0}])
        _fake_runs(plan)
        groups = group_runs(collect(plan, plan.out))
        with figstyle.style():
            out[name] = (exp.plot.draw(groups, name, "fashion-mnist"), groups)
    yield out
    plt.close("all")


def _legend_colours(fig) -> dict[str, str]:
    """The legend's networks (its entries before the blank one) and their colours."""
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    nets = zip(legend.legend_handles[: texts.index(" ")], texts)
    return {re.sub(r" \((\d+ of )?\d+ seeds\)$", "", t): to_hex(h.get_color()) for h, t in nets}


def test_one_colour_per_network_in_every_figure(drawn) -> None:
    seen: dict[str, str] = {}
    for name, (fig, groups) in drawn.items():
        colours = _legend_colours(fig)
        assert set(colours) == {g.label for g in groups}, name
        assert len(set(colours.values())) == len(colours), f"{name}: two networks share a colour"
        for label, c in colours.items():
            assert seen.setdefault(label, c) == c, f"{label} changes colour in {name}"
    assert seen["ResNet-56"] == figstyle.colour("resnet", 56) != seen["plain-56"]
    assert seen["ResNet-32 (A)"] == seen["ResNet-32"]  # option A is the CIFAR ResNet's own shortcut
    okabe_ito = {figstyle.BLUE, figstyle.VERMILLION, figstyle.GREEN, figstyle.ORANGE, figstyle.SKY}
    assert okabe_ito | {figstyle.PURPLE, figstyle.OLIVE, figstyle.BLACK, figstyle.WINE} >= set(
        figstyle.VARIANT_HUES.values()
    )


def _lab(hex_colour: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB colour, by the standard's formulas (IEC 61966-2-1, CIE 15)."""
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    m = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))
    xyz = [sum(a * b for a, b in zip(row, lin)) / w for row, w in zip(m, (0.95047, 1.0, 1.08883))]
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_networks_of_different_families_are_far_apart_in_colour() -> None:
    """No two networks of different families or variants within a CIE76 distance of 25 (SE-ResNet-56 in
    Okabe-Ito's sky blue was 13 from ResNet-20 and 10 from ResNet-32: one colour to the eye)."""
    assert math.dist(_lab("#56B4E9"), _lab(figstyle.colour("resnet", 20))) < 15  # the check can fail
    nets = [(v, d) for v in ("resnet", "plain", "highway") for d in (20, 32, 44, 56, 110)]
    nets += [("B", 34), ("C", 34), ("seresnet", 56), ("preact", 56), ("densenet", 56)]
    for i, (v, d) in enumerate(nets):
        for w, e in nets[i + 1 :]:
            if v != w:
                far = math.dist(_lab(figstyle.colour(v, d)), _lab(figstyle.colour(w, e)))
                assert far > 25, f"{v}-{d} and {w}-{e} are {far:.0f} apart"


def test_the_depth_figure_gives_each_depth_a_panel_of_its_own(drawn) -> None:
    """The depths' curves lie within a point of each other: one panel per depth, that depth in its
    colour, every other line in it grey (the other depths' means, for comparison)."""
    fig, groups = drawn["depth"]
    curves = [ax for ax in fig.axes if ax.get_xlabel() == "iterations"]
    assert len(curves) == len(groups) > 2
    for ax, g in zip(curves, sorted(groups, key=lambda g: g.depth)):
        assert ax.get_title().startswith(g.label)
        colours = {to_hex(ln.get_color()) for ln in ax.get_lines() if ln.get_transform() == ax.transData}
        assert colours == {figstyle.colour(g.variant, g.depth), to_hex("0.72")}, ax.get_title()


def test_no_twin_axes_and_the_legend_is_off_the_data(drawn) -> None:
    for name, (fig, _) in drawn.items():
        fig.canvas.draw()
        boxes = [tuple(ax.get_position().bounds) for ax in fig.axes]
        assert len(set(boxes)) == len(boxes), f"{name}: two axes on one spot (a twin axis)"
        legend = fig.legends[0].get_window_extent()
        for ax in fig.axes:
            assert not legend.overlaps(ax.get_window_extent()), f"{name}: the legend covers {ax.get_title()}"


def _final_panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_ylabel().startswith("final error")]


def test_final_errors_are_every_seed_as_a_dot_and_no_line_joins_networks(drawn) -> None:
    for name, (fig, groups) in drawn.items():
        panels = _final_panels(fig)
        assert panels, name
        labels = [t.get_text().replace("\n", " ") for ax in panels for t in ax.get_xticklabels()]
        assert {g.label for g in groups} <= set(labels), name
        for ax in panels:
            dots = [y for c in ax.collections if isinstance(c, PathCollection) for _, y in c.get_offsets()]
            nets = [
                g
                for g in groups
                if g.label in {t.get_text().replace("\n", " ") for t in ax.get_xticklabels()}
            ]
            assert len(dots) == sum(len(g.values(a)) for g in nets for a in ("train_error", "test_error"))
            assert not ax.get_lines(), f"{name}: a line joins the networks of {ax.get_title()}"
            lo, hi = ax.get_ylim()
            assert all(lo < y < hi for y in dots), f"{name}: a seed outside {ax.get_title()}"
            assert ax.get_yscale() == "log" or lo > 0, (
                f"{name}: a linear axis from zero hides the differences"
            )


def test_curve_axes_hold_every_point_on_a_log_scale(drawn) -> None:
    for name, (fig, _) in drawn.items():
        curves = [ax for ax in fig.axes if ax.get_xlabel() == "iterations"]
        assert curves and all(ax.get_yscale() == "log" for ax in curves), name
        for ax in curves:
            lo, hi = ax.get_ylim()
            data = [line for line in ax.get_lines() if line.get_transform() == ax.transData]  # not lr marks
            ys = [y for line in data for y in line.get_ydata() if math.isfinite(y)]
            assert ys and lo < min(ys) and max(ys) < hi <= 100, f"{name}: {ax.get_title()} clips a point"
            assert "training" in ax.get_title() or "test" in ax.get_title() or "error" in ax.get_title()


def test_a_spread_of_three_orders_gets_a_log_panel_and_a_zoom() -> None:
    assert figstyle.error_range([81.0, 14.0, 7.0, 90.0]) == pytest.approx((7.0 / 1.1, 99.0))
    assert figstyle.wants_log([70.0, 7.2, 7.4]) and not figstyle.wants_log([13.0, 7.0])
    lo, hi = figstyle.linear_range([7.0, 7.2])
    assert 6.8 < lo < 7.0 and 7.2 < hi < 7.4  # fitted to the dots, not from zero


def test_the_caption_says_what_bands_dots_and_bars_are_and_what_is_not_significant(drawn) -> None:
    groups = drawn["relatives"][1]
    weak = Claim("SE is better", "inconclusive", "", p=0.2, p_holm=0.4, family=2)
    strong = Claim("DenseNet is better", "supported", "", p=0.001, p_holm=0.002, family=2)
    text = plotting.caption(EXPERIMENTS["relatives"].plot, groups, "fashion-mnist", [weak, strong])
    assert "the shaded band spans the seeds' minimum to maximum (2 seeds per network)" in text
    assert "hollow: training, filled: test" in text and "a bar at the seeds' mean" in text
    assert "not drawn" in text  # the papers' CIFAR-10 numbers are not on our Fashion-MNIST axis
    assert "not significant: “SE is better” (Holm-adjusted p = 0.400)." in text and "DenseNet" not in text


def test_the_report_carries_the_caption(tmp_path: Path) -> None:
    plan = plan_experiment("depth", budget="quick", seeds=2, out=tmp_path / "d", dataset="cifar10")
    write_plan(plan, [{"wall_s": 1.0}])
    _fake_runs(plan)
    redraw(plan.out)
    report = (plan.out / "report.md").read_text()
    assert "Grey diamonds: the paper's Table 6" in report  # on CIFAR-10 the paper shares our axis
    assert "no line joins networks" in report and "the learning rate is divided by 10" in report
