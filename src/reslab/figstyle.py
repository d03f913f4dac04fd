"""The project's figure style, in one place: one colour and marker per network (the same in every figure),
the error axes, the "final error of each seed" panel, legends outside the data, the PNG writer.

Colours are Okabe & Ito's colour-blind-safe palette (Okabe & Ito 2008, "Color Universal Design"). A
network's colour is its family's hue (ResNet blue, plain vermillion, highway bluish green) at a shade
set by its depth, lighter for shallower nets, so ResNet-56 is the same blue wherever it is drawn and a
plain net never looks like a residual one; networks that appear at one depth only (shortcut options B
and C, SE-ResNet, pre-activation ResNet, DenseNet) have hues of their own, none near a family's shades
(SE-ResNet is Paul Tol's wine, from his colour-blind-safe "muted" scheme (Tol 2021, SRON/EPS/TN/09-002),
not Okabe-Ito's sky blue, which is within a few shades of ResNet-20's). Markers repeat the family, for
readers who cannot tell the hues apart. Option A is the CIFAR ResNets' own shortcut: ResNet-32 (A) is
ResNet-32 and is drawn as it.

Nothing here imports the rest of reslab but its file writer, so every package draws with it: the
experiments' figures, the analyses' (:func:`network_of` reads a network from an analysis label such as
``resnet56-s0`` or ``plain20 (no BN)``) and the tasks'.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# Okabe-Ito hues
BLUE, VERMILLION, GREEN = "#0072B2", "#D55E00", "#009E73"
ORANGE, SKY, PURPLE, OLIVE, BLACK = "#E69F00", "#56B4E9", "#CC79A7", "#999933", "#000000"
WINE = "#882255"  # Paul Tol's "muted" wine (as OLIVE is his): Okabe-Ito's sky is ResNet-20's light blue

FAMILY_HUES = {"resnet": BLUE, "A": BLUE, "plain": VERMILLION, "highway": GREEN}
VARIANT_HUES = {"B": PURPLE, "C": OLIVE, "seresnet": WINE, "preact": BLACK, "densenet": ORANGE}
MARKERS = {"resnet": "o", "A": "o", "plain": "s", "highway": "^", "B": "D", "C": "v"}
MARKERS |= {"seresnet": "P", "preact": "X", "densenet": "*"}
# depth -> shade: > 0 mixes the hue with white, < 0 with black
DEPTH_SHADES = {20: 0.5, 32: 0.3, 44: 0.12, 56: -0.1, 110: -0.5, 1202: -0.7}

RC = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "savefig.dpi": 110,
}
TRAIN_STYLE = {"ls": (0, (4, 2)), "lw": 1.2}  # training error: dashed
TEST_STYLE = {"ls": "-", "lw": 1.9, "ms": 4}  # test error: solid, a marker at each evaluation


def _mix(hex_colour: str, t: float) -> str:
    """``hex_colour`` mixed with white (t > 0) or black (t < 0) by ``|t|``."""
    rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
    target = 255 if t > 0 else 0
    return "#" + "".join(f"{round(c + (target - c) * abs(t)):02x}" for c in rgb)


def colour(variant: str, depth: int) -> str:
    """The colour of the network ``variant`` at ``depth``: the same in every figure (module docstring)."""
    if variant in VARIANT_HUES:
        return VARIANT_HUES[variant]
    return _mix(FAMILY_HUES.get(variant, "#777777"), DEPTH_SHADES.get(depth, 0.0))


_NAME = re.compile(r"(preact_resnet|preact|se_?resnet|plain|resnet|highway)[_-]?(\d+)", re.IGNORECASE)
_VARIANT_OF = {"preact_resnet": "preact", "preact": "preact", "seresnet": "seresnet", "se_resnet": "seresnet"}


def network_of(label: str) -> tuple[str, int]:
    """(variant, depth) of a network named in ``label`` ("resnet56-s0", "plain20 (no BN)",
    "preact_resnet56", "ResNet-110"); ("", 0) when it names none."""
    m = _NAME.search(label.replace("ResNet-", "resnet").replace("plain-", "plain"))
    if not m:
        return "", 0
    name = m.group(1).lower()
    return _VARIANT_OF.get(name, name), int(m.group(2))


def network_colour(label: str) -> str:
    """The colour of the network named in ``label`` (:func:`network_of`; grey for none): the same as
    :func:`colour` gives it in the experiments' figures."""
    variant, depth = network_of(label)
    return colour(variant, depth) if variant else "#777777"


def marker(variant: str) -> str:
    return MARKERS.get(variant, "o")


def style() -> Any:
    """The context the figures are drawn and written in (``with style(): ...``)."""
    import matplotlib

    matplotlib.use("Agg")
    return matplotlib.rc_context(RC)


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG (at :data:`RC`'s resolution) and close it."""
    import matplotlib.pyplot as plt

    from reslab._io import write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(Path(path), buf.getvalue())
    return Path(path)


# ------------------------------------------------------------------------------------------- axes

NICE_TICKS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)


def log_error_axis(ax: Any, values: Iterable[float], label: str = "error (%, log scale)") -> None:
    """A log error axis that holds every value given (none clipped), labelled in plain percent."""
    import matplotlib.ticker as mticker

    vals = [v for v in values if math.isfinite(v) and v > 0]
    lo, hi = error_range(vals)
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ax.yaxis.set_major_locator(mticker.FixedLocator([t for t in NICE_TICKS if lo <= t <= hi]))
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_ylabel(label)


def error_range(values: Sequence[float]) -> tuple[float, float]:
    """The limits of a log error axis: every value inside with 10% to spare, at most 100%."""
    vals = [v for v in values if math.isfinite(v) and v > 0]
    if not vals:
        return 1.0, 100.0
    return min(vals) / 1.1, min(100.0, max(max(vals) * 1.1, min(vals) * 2))


def wants_log(values: Sequence[float], ratio: float = 3.0) -> bool:
    """Whether final errors span so much (the largest over ``ratio`` times the smallest) that a linear
    axis would squash the small ones: such a panel gets a log axis and a zoomed twin."""
    vals = [v for v in values if math.isfinite(v) and v > 0]
    return bool(vals) and max(vals) > ratio * min(vals)


def linear_range(values: Sequence[float]) -> tuple[float, float]:
    """A linear axis fitted to ``values`` (every one inside), with a margin of 8% of their span (at
    least 0.1 points): a difference the seeds do not support shows as their overlap, not as a slope."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return 0.0, 1.0
    pad = max(0.08 * (max(vals) - min(vals)), 0.1)
    return min(vals) - pad, max(vals) + pad


# ---------------------------------------------------------------------------------- final errors

FINAL_ERRORS = (("train_error", "training"), ("test_error", "test"))


def final_error_panel(
    ax: Any,
    networks: Sequence[Any],
    *,
    log: bool = False,
    paper: dict[int, float] | None = None,
    errors: Sequence[tuple[str, str]] = FINAL_ERRORS,
    slant: bool = False,
) -> list[float]:
    """Each network's final errors, one dot per seed (hollow: training, filled: test), a bar at the
    seeds' mean; networks side by side, no line between them. ``networks``: groups (``label``,
    ``variant``, ``depth``, ``values(attr)``); ``paper``: index -> a value on the same axis, drawn as a
    grey diamond beside the test dots; ``slant``: tick labels slanted, where the panel is narrow for
    them. The dots are circles whatever the network (the colour and the tick say which): hollow and
    filled stay apart. Returns the values drawn."""
    drawn: list[float] = []
    for i, g in enumerate(networks):
        c = colour(g.variant, g.depth)
        for j, (attr, _) in enumerate(errors):
            x0 = i + (j - (len(errors) - 1) / 2) * 0.3
            vals = g.values(attr)
            xs = [x0 + (k - (len(vals) - 1) / 2) * 0.035 for k in range(len(vals))]
            face = "white" if j == 0 and len(errors) > 1 else c
            ax.scatter(xs, vals, s=22, marker="o", facecolors=face, edgecolors=c, linewidths=1.1, zorder=3)
            if vals:
                ax.hlines(sum(vals) / len(vals), x0 - 0.12, x0 + 0.12, colors=c, lw=2.2, zorder=2)
            drawn += vals
        if paper and i in paper:
            ax.scatter([i + 0.38], [paper[i]], s=26, marker="D", color="0.45", zorder=3)
            drawn.append(paper[i])
    ax.set_xticks(range(len(networks)), [wrap(g.label) for g in networks])
    if slant:
        ax.tick_params(axis="x", labelrotation=25)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
            t.set_rotation_mode("anchor")
    ax.set_xlim(-0.6, len(networks) - 0.4)
    ax.grid(False, axis="x")
    if log:
        log_error_axis(ax, drawn, "final error (%, log scale)")
    else:
        ax.set_ylim(*linear_range(drawn))
        ax.set_ylabel("final error (%)")
    return drawn


def wrap(label: str) -> str:
    """A network's label for a tick: a parenthesis on a line of its own."""
    return label.replace(" (", "\n(")


def final_error_handles(errors: Sequence[tuple[str, str]] = FINAL_ERRORS, paper: str = "") -> list[Any]:
    """Legend entries saying what the final-error panels' dots and bars are."""
    from matplotlib.lines import Line2D

    hollow = len(errors) > 1
    out = [
        Line2D([], [], ls="", marker="o", mfc="white" if hollow and j == 0 else "0.3", mec="0.3",
               label=f"final {name} error, one per seed")
        for j, (_, name) in enumerate(errors)
    ]  # fmt: skip
    out.append(Line2D([], [], color="0.3", lw=2.2, label="mean over seeds"))
    if paper:
        out.append(Line2D([], [], ls="", marker="D", color="0.45", label=paper))
    return out


def curve_handles(bands: bool) -> list[Any]:
    """Legend entries saying what the curves are."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out = [
        Line2D([], [], color="0.3", **TRAIN_STYLE, label="training error (mean)"),
        Line2D([], [], color="0.3", marker="o", **TEST_STYLE, label="test error (mean)"),
    ]
    if bands:
        out.append(Patch(color="0.3", alpha=0.18, lw=0, label="seeds' min–max"))
    return out


def legend_outside(fig: Any, handles: list[Any], title: str = "", **kwargs: Any) -> None:
    """The figure's one legend, right of every panel (never over data); ``kwargs``: matplotlib's
    legend options (``handlelength`` long enough to show a dashed line's dashes beside its marker)."""
    fig.legend(handles=handles, loc="outside right center", frameon=False, title=title or None, **kwargs)
