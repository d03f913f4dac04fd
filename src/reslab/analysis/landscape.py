"""Loss landscapes (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets").

- ``plane`` (2-D): ``L(theta + a d1 + b d2)`` on a grid, ``d1``, ``d2`` random Gaussian directions,
  *filter-normalized* (:mod:`reslab.analysis.directions`): each filter (slice along the output
  dimension) of a direction is scaled to the norm of the matching filter of the weights (Li et al.,
  Sec. 4). Parameters with one dimension (BN weight and bias, biases) get direction zero, so BN is not
  perturbed; BN runs in eval mode.
- ``direction`` (1-D): the same along one filter-normalized direction.
- ``line`` (1-D): ``L((1 - a) theta_A + a theta_B)`` between two checkpoints of the same architecture
  (Goodfellow et al. 2015); here every floating-point parameter and buffer is interpolated, BN
  running statistics included.

The loss (mean cross-entropy) and error are evaluated on a fixed data subset. Grids are resumable: after
every row the grid, with NaN where not yet computed, is written atomically to ``landscape_<label>.npz``
and the directions to ``directions_<label>.pt``; a rerun with the same ``--out`` and settings continues.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from reslab.analysis.common import fmt_num, new_figure, save_figure, write_summary
from reslab.analysis.landscape_grid import Grid, load_or_draw_directions
from reslab.analysis.targets import EvalData, Target
from reslab.errors import ConfigError


@dataclass
class Landscape:
    label: str
    mode: str  # plane / direction / line
    alphas: np.ndarray
    betas: np.ndarray | None
    loss: np.ndarray  # (len(alphas),) or (len(alphas), len(betas)); NaN = not computed
    error: np.ndarray
    origin_loss: float
    trained: bool

    @property
    def complete(self) -> bool:
        return bool(np.isfinite(self.loss).all())


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "target"


def compute_landscape(
    model: nn.Module,
    data: EvalData,
    *,
    mode: str = "plane",
    resolution: int = 21,
    span: float = 1.0,
    seed: int = 0,
    other: nn.Module | None = None,
    line_margin: float = 0.25,
    batch_size: int = 256,
    label: str = "",
    trained: bool = False,
    state_path: Path | None = None,
    progress: bool = False,
    settings: dict[str, Any] | None = None,
) -> Landscape:
    """Compute (or continue) one landscape; with ``state_path`` the partial grid is saved after every row.

    ``plane``: ``resolution x resolution`` grid over ``[-span, span]^2``; ``direction``: ``resolution``
    points over ``[-span, span]``; ``line``: ``resolution`` points from 0 (this model) to 1 (``other``),
    both included, plus the same spacing continued ``line_margin`` beyond each end.
    """
    meta = {
        "mode": mode,
        "resolution": resolution,
        "span": span,
        "seed": seed,
        "samples": len(data),
        "line_margin": line_margin,
        **(settings or {}),
    }
    grid = Grid.new(mode, resolution, span, line_margin, other, meta, state_path)
    resume = grid.load()
    dirs = load_or_draw_directions(mode, model, other, seed, grid.directions_path, resume)
    origin_loss = grid.fill(model, data, dirs, batch_size=batch_size, label=label, progress=progress)
    return Landscape(label, mode, grid.alphas, grid.betas, grid.loss, grid.error, origin_loss, trained)


def run_landscape(
    targets: Sequence[Target],
    out: Path,
    *,
    mode: str = "plane",
    resolution: int = 21,
    span: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, Any]:
    """The ``landscape`` analysis. ``line`` takes exactly two targets (from the first toward the second);
    the other modes compute one landscape per target."""
    if mode == "line":
        if len(targets) != 2:
            raise ConfigError("--mode line needs exactly two checkpoints / run directories (from, to)")
        jobs: list[tuple[Target, nn.Module | None]] = [(targets[0], targets[1].model)]
    else:
        jobs = [(t, None) for t in targets]
    results = []
    for t, other in jobs:
        label = t.label if other is None else f"{t.label} -> {targets[1].label}"
        state = out / f"landscape_{_slug(label)}.npz"
        results.append(
            compute_landscape(
                t.model,
                t.data,
                mode=mode,
                resolution=resolution,
                span=span,
                seed=seed,
                other=other,
                batch_size=batch_size,
                label=label,
                trained=t.trained,
                state_path=state,
                progress=progress,
                settings={"source": t.source, "to": targets[1].source if other is not None else None},
            )
        )
    files = [f"landscape_{_slug(r.label)}.npz" for r in results] + _plot(results, out)
    write_summary(out, f"Loss landscape ({mode})", targets, [_table(results), explain(results)], files)
    return {"landscapes": results}


def _table(results: Sequence[Landscape]) -> str:
    lines = [
        "Mean cross-entropy on a fixed data subset, BN in eval mode, BN/bias parameters unperturbed "
        "(random directions, filter-normalized). `rise at edge` is the mean loss on the border of the grid "
        "minus the loss at the origin.",
        "",
        "| network | mode | points | loss at origin | min loss | max loss | rise at edge | computed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.label} | {r.mode} | {r.loss.size} | {fmt_num(r.origin_loss)} | {fmt_num(float(np.nanmin(r.loss)))} "
            f"| {fmt_num(float(np.nanmax(r.loss)))} | {fmt_num(_edge_rise(r))} "
            f"| {int(np.isfinite(r.loss).sum())}/{r.loss.size} |"
        )
    return "\n".join(lines)


def _edge_rise(r: Landscape) -> float:
    grid = r.loss
    if grid.ndim == 1:
        edge = np.array([grid[0], grid[-1]])
    else:
        edge = np.concatenate([grid[0], grid[-1], grid[1:-1, 0], grid[1:-1, -1]])
    return float(np.nanmean(edge) - r.origin_loss)


CURVATURE_RATIO = (
    0.1  # a point is non-convex when its most negative curvature exceeds this share of the largest
)
SMOOTH_BELOW = 0.10  # fraction of non-convex interior points under which a surface is called a convex bowl
RUGGED_ABOVE = 0.30  # ... and above which it is called rugged (chaotic, Li et al. Fig. 5)


def nonconvexity(loss: np.ndarray, ratio: float = CURVATURE_RATIO) -> float:
    """Fraction of interior grid points where the loss surface is clearly non-convex.

    Li et al. (2018, Sec. 6) map ``|lambda_min / lambda_max|`` of the Hessian: near zero where the surface
    is convex, large where it curves down strongly. On a grid the same idea is taken from second
    differences along the four lines through each interior point (the two axes and both diagonals),
    ``d2 = f(p + h) + f(p - h) - 2 f(p)``: a point counts when the most negative of them is below
    ``-ratio`` times the largest in magnitude. By Jensen's inequality every second difference of a convex
    function is >= 0, however steep (an eval-mode BN net's loss climbs from 0.2 to 1e5 across the grid),
    so a convex surface is never flagged; small ripples on a steep bowl do not reach the ratio; a saddle,
    a ridge or a chaotic surface does. (The log of the loss is not used: the log of a convex bowl is
    concave away from its minimum.) 1-D: the one line.
    """
    g = np.asarray(loss, dtype=np.float64)
    if g.ndim == 1:
        lines = [g[:-2] + g[2:] - 2 * g[1:-1]]
    else:
        c = 2 * g[1:-1, 1:-1]
        lines = [
            g[:-2, 1:-1] + g[2:, 1:-1] - c,
            g[1:-1, :-2] + g[1:-1, 2:] - c,
            g[:-2, :-2] + g[2:, 2:] - c,
            g[:-2, 2:] + g[2:, :-2] - c,
        ]
    d2 = np.stack(lines)
    ok = np.isfinite(d2).all(axis=0)
    if not ok.any():
        return float("nan")
    lowest, largest = d2.min(axis=0)[ok], np.abs(d2).max(axis=0)[ok]
    return float((lowest < -ratio * largest).mean())


def surface_words(nc: float) -> str:
    """The shape a non-convex fraction describes (:data:`SMOOTH_BELOW`, :data:`RUGGED_ABOVE`)."""
    if not np.isfinite(nc):
        return "not measured"
    if nc < SMOOTH_BELOW:
        return "a smooth, nearly convex bowl"
    if nc > RUGGED_ABOVE:
        return "a rugged, non-convex surface"
    return "a mostly convex surface with some non-convex regions"


def explain(results: Sequence[Landscape]) -> str:
    parts = ["**What the numbers show.**"]
    for r in results:
        nc = nonconvexity(r.loss)
        parts.append(
            f"{r.label}: loss {fmt_num(r.origin_loss)} at the origin, rising by {fmt_num(_edge_rise(r))} on average "
            f"at the border of the grid; at {nc:.0%} of the interior points the surface curves down along some "
            f"line by more than {CURVATURE_RATIO:.0%} of its strongest curvature there (the grid's analogue of "
            "Li et al.'s |lambda_min/lambda_max|; "
            f"below {SMOOTH_BELOW:.0%}: convex bowl, above {RUGGED_ABOVE:.0%}: rugged): {surface_words(nc)}."
        )
    if any(r.mode == "plane" for r in results):
        parts.append(
            "Li et al. found that without skip connections deep networks (e.g. ResNet-56 'noshort') have chaotic, "
            "non-convex landscapes while their residual twins stay smooth and nearly convex around the minimum; "
            "compare the plain and residual targets above on the same grid. Filter normalization makes the axes "
            "comparable between networks: a step of 1 moves every filter by its own norm."
        )
    if any(not r.trained for r in results):
        parts.append(
            "Freshly initialized targets are not at a minimum, so their surfaces show the landscape around a random "
            "point; Li et al.'s observations are about trained minimizers."
        )
    return " ".join(parts)


def contour_levels(results: Sequence[Landscape], step: float = 0.25) -> np.ndarray:
    """Contour levels of log10 loss shared by every panel, every ``step`` decades: the same loss has the
    same contour and colour in every landscape figure, so two networks can be compared across figures."""
    z = np.concatenate([np.log10(np.maximum(r.loss[np.isfinite(r.loss)], 1e-12)) for r in results])
    if not z.size:
        return np.array([0.0, step])
    lo, hi = np.floor(z.min() / step) * step, np.ceil(z.max() / step) * step
    return np.arange(lo, hi + step / 2, step) if hi > lo else np.array([lo, lo + step])


def _plot(results: Sequence[Landscape], out: Path) -> list[str]:
    """The figures of the landscapes (all of one mode); returns their file names in ``out``."""
    if results[0].mode != "plane":
        _plot_curves(results, out / "landscape.png")
        return ["landscape.png"]
    levels = contour_levels(results)
    _plot_contours(results, levels, out / "landscape.png")
    _plot_surfaces(results, levels, out / "landscape_3d.png")
    return ["landscape.png", "landscape_3d.png"]


SMOOTH_POINTS = 129  # the contours are drawn on an interpolation of the measured grid at this resolution


def smooth_grid(r: Landscape, points: int = SMOOTH_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alphas, betas, log10 loss) on a ``points`` x ``points`` grid, interpolated through the measured
    log10 losses for drawing only (every number of the summary is from the measured grid): piecewise
    cubic Hermite, monotone between neighbouring points along each axis (``scipy.interpolate.
    RegularGridInterpolator(method="pchip")``, SciPy >= 1.13), so it adds no minima or maxima between
    measured points that a cubic spline's overshoot would draw as small islands; with an older SciPy an
    interpolating cubic spline (``RectBivariateSpline``, ``s=0``). Both pass through every measured
    point. An incomplete grid (NaN) is returned as measured."""
    from scipy.interpolate import RectBivariateSpline, RegularGridInterpolator

    assert r.betas is not None
    z = np.log10(np.maximum(r.loss, 1e-12))
    if not np.isfinite(z).all() or min(z.shape) < 4:
        return r.alphas, r.betas, z
    a = np.linspace(r.alphas[0], r.alphas[-1], points)
    b = np.linspace(r.betas[0], r.betas[-1], points)
    try:
        f = RegularGridInterpolator((r.alphas, r.betas), z, method="pchip")
    except ValueError:  # SciPy < 1.13
        return a, b, RectBivariateSpline(r.alphas, r.betas, z, kx=3, ky=3, s=0)(a, b)
    ga, gb = np.meshgrid(a, b, indexing="ij")
    return a, b, f(np.stack([ga, gb], axis=-1))


def _ticks(axis: np.ndarray) -> np.ndarray:
    """Five ticks from end to end of a grid axis (the default's nine crowd the labels)."""
    return np.linspace(float(axis[0]), float(axis[-1]), 5)


def _plot_contours(results: Sequence[Landscape], levels: np.ndarray, path: Path) -> None:
    """One panel of log10-loss contours per plane, on the shared ``levels`` and colour scale, drawn on
    :func:`smooth_grid` (the measured grid points shown as dots, the caption says so)."""
    import matplotlib

    from reslab import figstyle

    n = len(results)
    norm = matplotlib.colors.Normalize(vmin=levels[0], vmax=levels[-1])
    with figstyle.style():
        fig, axes = new_figure(1, n, figsize=(4.6 * n + 1.2, 4.6), squeeze=False, layout="constrained")
        for k, (ax, r) in enumerate(zip(axes[0], results)):
            a, b, z = smooth_grid(r)
            cs = ax.contour(a, b, z.T, levels=levels, cmap="viridis", norm=norm, linewidths=1.1)
            ax.clabel(cs, cs.levels[::4], fontsize=6, fmt="%.2f")
            ga, gb = np.meshgrid(r.alphas, r.betas, indexing="ij")
            ax.scatter(ga.ravel(), gb.ravel(), s=1.5, color="0.6", lw=0, zorder=1)
            ax.plot([0], [0], marker="+", color=figstyle.VERMILLION, ms=9, mew=1.6, ls="")
            ax.set_title(f"{r.label}: log10 loss")
            ax.set_xlabel("direction 1")
            if k == 0:
                ax.set_ylabel("direction 2")
            ax.set_aspect("equal")
            ax.set_xticks(_ticks(r.alphas))
            ax.set_yticks(_ticks(r.betas))
            ax.grid(False)
        sm = matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis")
        fig.colorbar(sm, ax=list(axes[0]), label="log10 loss (levels every 0.25, shared)", shrink=0.9)
        m = len(results[0].alphas)
        fig.supxlabel(
            f"Contours: a monotone cubic (PCHIP) interpolation through the {m} x {m} measured losses (grey dots); "
            "+: the trained network", fontsize=8, color="0.3",
        )  # fmt: skip
        save_figure(fig, path)


def _plot_surfaces(results: Sequence[Landscape], levels: np.ndarray, path: Path) -> None:
    """The same planes as 3-D surfaces of log10 loss (the measured grid), on the same colour scale and
    height range; axis labels padded clear of the tick labels."""
    import matplotlib
    import matplotlib.pyplot as plt

    from reslab import figstyle

    n = len(results)
    norm = matplotlib.colors.Normalize(vmin=levels[0], vmax=levels[-1])
    with figstyle.style():
        fig = plt.figure(figsize=(5.5 * n, 4.8))
        for k, r in enumerate(results):
            assert r.betas is not None
            ax = fig.add_subplot(1, n, k + 1, projection="3d")
            a, b = np.meshgrid(r.alphas, r.betas, indexing="ij")
            z = np.where(np.isfinite(r.loss), np.log10(np.maximum(r.loss, 1e-12)), np.nan)
            ax.plot_surface(a, b, z, cmap="viridis", norm=norm, linewidth=0, antialiased=True)
            ax.set_zlim(levels[0], levels[-1])
            ax.set_title(f"{r.label}: log10 loss")
            ax.tick_params(axis="both", pad=1)
            ax.set_xticks(_ticks(r.alphas))
            ax.set_yticks(_ticks(r.betas))
            ax.set_xlabel("direction 1", labelpad=6)
            ax.set_ylabel("direction 2", labelpad=9)
            ax.set_zlabel("log10 loss", labelpad=7)
        save_figure(fig, path)


def _plot_curves(results: Sequence[Landscape], path: Path) -> None:
    """1-D landscapes (``direction`` or ``line``): loss (log scale) and error along the axis."""
    fig, axes = new_figure(1, 2, figsize=(12, 4.5))
    for r in results:
        axes[0].plot(r.alphas, r.loss, marker=".", label=r.label)
        axes[1].plot(r.alphas, r.error, marker=".", label=r.label)
    xl = (
        "interpolation coefficient (0 = first, 1 = second)"
        if results[0].mode == "line"
        else "step along the direction"
    )
    axes[0].set_title("loss")
    axes[0].set_yscale("log")
    axes[1].set_title("error (%)")
    for ax in axes:
        ax.set_xlabel(xl)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    save_figure(fig, path)
