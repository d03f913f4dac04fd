"""Lesion study (Veit et al. 2016, Sec. 4-5): test error after deleting one unit, after deleting ``k`` random
units, and after swapping two adjacent units.

A deleted unit returns ``shortcut(x)`` (``unit.deleted = True``): in a residual network the signal still
flows through the identity (or option-A / projection) shortcut; in a plain network the same lesion
replaces a layer's transformation by the shortcut the plain unit keeps only for this purpose, which
removes a link of its only path. BN stays in eval mode with the statistics learned by the whole network,
as in Veit et al.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reslab.analysis import stats
from reslab.analysis._capture import bn_mode
from reslab.analysis.common import (
    blocks_of,
    evaluate,
    fmt_num,
    new_figure,
    save_figure,
    write_csv,
    write_summary,
)
from reslab.analysis.targets import EvalData, Target
from reslab.models.base import deleted_blocks


def _parents(model: nn.Module) -> dict[int, tuple[nn.Module, str]]:
    out: dict[int, tuple[nn.Module, str]] = {}
    for _, parent in model.named_modules():
        for name, child in parent.named_children():
            out.setdefault(id(child), (parent, name))
    return out


@contextlib.contextmanager
def swapped_blocks(model: nn.Module, i: int, j: int) -> Iterator[nn.Module]:
    """Temporarily exchange the positions of ``model.blocks[i]`` and ``model.blocks[j]`` in the forward order."""
    blocks = blocks_of(model)
    bi, bj = blocks[i], blocks[j]
    parents = _parents(model)
    (pi, ni), (pj, nj) = parents[id(bi)], parents[id(bj)]

    def put(a: nn.Module, b: nn.Module) -> None:
        setattr(pi, ni, a)
        setattr(pj, nj, b)

    put(bj, bi)
    try:
        got = blocks_of(model)
        if got[i] is not bj or got[j] is not bi:
            raise RuntimeError("model.blocks did not follow the swap (is it cached?)")
        yield model
    finally:
        put(bi, bj)


@torch.no_grad()
def block_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(input shape, output shape) of every unit, per sample, from one forward pass of ``x``."""
    blocks = blocks_of(model)
    shapes: list[Any] = [None] * len(blocks)

    def hook(i: int):
        def f(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            shapes[i] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))

        return f

    handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]
    try:
        with bn_mode(model, "eval"):
            model(x.to(next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return shapes


def swappable_pairs(model: nn.Module, x: torch.Tensor) -> list[bool]:
    """For each adjacent pair (i, i+1): can the two units trade places (both keep their input's shape)?"""
    sh = block_shapes(model, x[:1])
    return [sh[i][0] == sh[i][1] and sh[i + 1][0] == sh[i + 1][1] for i in range(len(sh) - 1)]


@dataclass
class LesionResult:
    label: str
    base_error: float
    single: np.ndarray  # error (%) with unit i deleted
    k: np.ndarray  # number of deleted units
    random_mean: np.ndarray  # mean error over samples for each k
    random_std: np.ndarray
    swap: np.ndarray  # error with units (i, i+1) swapped; NaN where shapes forbid
    plain: bool
    trained: bool
    downsample: list[bool] | None = None  # unit i changes the shape (resolution / width)
    chance: float = float("nan")  # error (%) of a constant guess: 100 (1 - 1/classes)


def lesion_study(
    model: nn.Module,
    data: EvalData,
    *,
    batch_size: int = 256,
    samples: int = 10,
    max_k: int | None = None,
    seed: int = 0,
    label: str = "",
    trained: bool = False,
    progress: bool = False,
) -> LesionResult:
    """All three lesions on ``data``; ``samples`` random sets of ``k`` units for each ``k = 1..max_k``."""
    blocks = blocks_of(model)
    n = len(blocks)
    max_k = n if max_k is None else max(1, min(n, max_k))

    def err() -> float:
        with bn_mode(model, "eval"):
            return evaluate(model, data, batch_size)[1]

    base = err()
    steps = n + max_k * samples + max(n - 1, 0)
    bar = _bar(steps, label, progress)
    single = np.zeros(n)
    for i in range(n):
        with deleted_blocks(model, [i]):
            single[i] = err()
        bar.update()
    rng = np.random.default_rng(seed)
    ks = np.arange(1, max_k + 1)
    rmean, rstd = np.zeros(len(ks)), np.zeros(len(ks))
    for j, k in enumerate(ks):
        errs = []
        for _ in range(samples if k < n else 1):
            idx = rng.choice(n, size=int(k), replace=False)
            with deleted_blocks(model, idx.tolist()):
                errs.append(err())
            bar.update()
        if k == n:
            bar.update(samples - 1)
        rmean[j], rstd[j] = float(np.mean(errs)), float(np.std(errs))
    swap = np.full(max(n - 1, 0), np.nan)
    shapes = block_shapes(model, data.x[:1])
    ok = [shapes[i][0] == shapes[i][1] and shapes[i + 1][0] == shapes[i + 1][1] for i in range(n - 1)]
    for i, can in enumerate(ok):
        if can:
            with swapped_blocks(model, i, i + 1):
                swap[i] = err()
        bar.update()
    bar.close()
    plain = not any(getattr(b, "has_shortcut", True) for b in blocks)
    down = [a != b for a, b in shapes]
    chance = _chance(getattr(model, "num_classes", None))
    return LesionResult(label, base, single, ks, rmean, rstd, swap, plain, trained, down, chance)


def _bar(total: int, label: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"lesion {label}", disable=not enabled, leave=False)


def run_lesion(
    targets: Sequence[Target],
    out: Path,
    *,
    batch_size: int = 256,
    samples: int = 10,
    max_k: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    results = [
        lesion_study(
            t.model,
            t.data,
            batch_size=batch_size,
            samples=samples,
            max_k=max_k,
            seed=seed,
            label=t.label,
            trained=t.trained,
            progress=progress,
        )
        for t in targets
    ]
    write_csv(out / "lesion.csv", [row for r in results for row in _rows(r)])
    _plot(results, out / "lesion.png")
    write_summary(
        out,
        "Lesion study: deleting and reordering units",
        targets,
        [_table(results, samples), explain(results)],
        ["lesion.csv", "lesion.png"],
    )
    return {"results": results}


def _rows(r: LesionResult) -> list[dict[str, Any]]:
    """lesion.csv's rows of one network: intact, each unit deleted, k random units deleted (mean and std
    over the sets), each adjacent pair that can be swapped."""

    def row(lesion: str, index: int | str, k: int, error: float, error_std: float = 0.0) -> dict[str, Any]:
        return {
            "target": r.label,
            "lesion": lesion,
            "index": index,
            "k": k,
            "error": error,
            "error_std": error_std,
        }

    return [
        row("none", "", 0, r.base_error),
        *(row("delete", i, 1, float(e)) for i, e in enumerate(r.single)),
        *(
            row("delete_random", "", int(k), float(m), float(s))
            for k, m, s in zip(r.k, r.random_mean, r.random_std)
        ),
        *(row("swap", i, 2, float(e)) for i, e in enumerate(r.swap) if np.isfinite(e)),
    ]


def _chance(num_classes: int | None) -> float:
    return 100.0 * (1 - 1 / num_classes) if num_classes else float("nan")


def _table(results: Sequence[LesionResult], samples: int) -> str:
    lines = [
        f"Top-1 error in percent; random deletions: mean over {samples} random sets of k units per k. "
        "`swap` is over adjacent pairs whose shapes allow the exchange.",
        "",
        "| network | units | error | delete one: median / max | delete half (random) | swap: median / max |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        half = len(r.single) // 2
        hv = r.random_mean[half - 1] if 0 < half <= len(r.random_mean) else float("nan")
        sw = r.swap[np.isfinite(r.swap)]
        sws = f"{np.median(sw):.2f} / {np.max(sw):.2f}" if len(sw) else "n/a"
        lines.append(
            f"| {r.label} | {len(r.single)} | {r.base_error:.2f} | {np.median(r.single):.2f} / {np.max(r.single):.2f} "
            f"| {fmt_num(float(hv))} | {sws} |"
        )
    return "\n".join(lines)


def downsampling_sentence(r: LesionResult) -> str:
    """Veit et al. (Sec. 5): deleting a unit that changes the resolution hurts more than the others.

    Decided by Welch's t-test at 5% between the error increases of the shape-changing units and of the
    other units (the units as samples; :mod:`reslab.analysis.stats`): the means alone differ by chance.
    """
    inc = r.single - r.base_error
    down = [i for i, d in enumerate(r.downsample or []) if d]
    other = [i for i, d in enumerate(r.downsample or []) if not d]
    md = float(np.mean(inc[down]))
    mo = float(np.mean(inc[other])) if other else float("nan")
    text = (
        f"The units that change the shape ({', '.join(map(str, down))}) cost {md:.1f} points on average, "
        f"the others {mo:.1f}"
    )
    worst = int(np.argmax(inc))
    if len(down) < 2 or len(other) < 2:
        verdict = ": too few units on one side for a test, so this does not decide Veit et al.'s observation"
    else:
        w = stats.welch(inc[other].tolist(), inc[down].tolist())
        test = f"Welch's t-test over units, p = {w.p:.3f}"
        if w.p < stats.ALPHA and md > mo:
            verdict = f" ({test}): as Veit et al. report, the resolution-changing units are more harmful"
        elif w.p < stats.ALPHA:
            verdict = (
                f" ({test}): unlike Veit et al.'s ResNet-110, the resolution-changing units are less harmful"
            )
        else:
            verdict = (
                f" ({test}): the difference is within the spread over units, so these numbers do not show the "
                "resolution-changing units to be more harmful"
            )
    if not (r.downsample or [False])[worst]:
        verdict += f"; the single most harmful deletion is unit {worst}, which keeps the shape"
    return text + verdict + "."


def explain(results: Sequence[LesionResult]) -> str:
    parts = ["**What the numbers show.**"]
    for r in results:
        inc = r.single - r.base_error
        order = np.argsort(-inc)
        worst = ", ".join(f"unit {int(i)} (+{inc[i]:.1f})" for i in order[:3])
        parts.append(
            f"{r.label}: base error {r.base_error:.2f}%; deleting a single unit raises it by a median of "
            f"{np.median(inc):.2f} points (worst: {worst})."
        )
        if r.downsample and any(r.downsample) and not r.plain:
            parts.append(downsampling_sentence(r))
        if len(r.random_mean) > 1:
            steps = np.diff(np.concatenate([[r.base_error], r.random_mean]))
            half = np.nonzero(r.random_mean >= 50.0)[0]
            falls = int((steps < 0).sum())
            parts.append(
                f"Deleting k random units raises the error to {r.random_mean[0]:.1f}% at k = 1 and "
                f"{r.random_mean[-1]:.1f}% at k = {int(r.k[-1])}"
                + (f"; the mean passes 50% at k = {int(r.k[half[0]])}" if len(half) else "")
                + (
                    "; it rises at every k."
                    if falls == 0
                    else f"; it is at its plateau from k = 1 on (within {np.ptp(r.random_mean):.1f} points)."
                    if r.random_mean.min() >= r.random_mean.max() - 5.0
                    else f"; the mean is not monotone in k ({falls} of {len(steps)} steps go down, largest rise "
                    f"{steps.max():.1f} points, std over the sets up to {np.nanmax(r.random_std):.1f}): which units "
                    "are drawn matters as much as how many."
                )
            )
    res = [r for r in results if not r.plain and r.trained]
    plain = [r for r in results if r.plain and r.trained]
    if res:
        parts.append(
            "For trained residual networks Veit et al. predict that most single deletions are nearly harmless "
            "(the network behaves like an ensemble of many paths, and a deletion removes only half of them) "
            "except where the unit changes the resolution, and that error grows smoothly with the number of "
            "deleted units; their ResNet-110 was trained to convergence, and a shallow or briefly trained network "
            "relies more on each unit."
        )
    if plain:
        parts.append(
            "For trained plain networks a deletion removes a link of the only path, so the error is expected to "
            "jump toward chance level."
        )
    if not any(r.trained for r in results):
        parts.append(
            "All targets are freshly initialized: their error is near chance before any lesion, so these numbers "
            "only check the machinery; the lesion study is meaningful on trained checkpoints."
        )
    return " ".join(parts)


def _plot(results: Sequence[LesionResult], path: Path) -> None:
    """Veit et al.'s Figs. 3 and 5: single deletions (shape-changing units shaded), k random deletions
    (bars: the std over the random sets), adjacent swaps; dotted: each network intact, dash-dotted grey:
    chance (a constant guess). One colour per network (:mod:`reslab.figstyle`), one legend outside."""
    from reslab import figstyle

    with figstyle.style():
        fig, axes = new_figure(1, 3, figsize=(15, 4.2), layout="constrained")
        marked: set[int] = set()
        handles = []
        for r in results:
            c, ls = figstyle.network_colour(r.label), (0, (4, 2)) if r.plain else "-"
            handles += axes[0].plot(
                np.arange(len(r.single)), r.single, ls=ls, color=c, marker=".", label=r.label
            )
            for i, d in enumerate(r.downsample or []):
                if d and i not in marked:
                    marked.add(i)
                    axes[0].axvspan(i - 0.4, i + 0.4, color="0.88", zorder=0)
            axes[1].errorbar(r.k, r.random_mean, yerr=r.random_std, ls=ls, color=c, marker=".", capsize=2)
            if np.isfinite(r.swap).any():
                axes[2].plot(np.arange(len(r.swap)), r.swap, ls=ls, color=c, marker=".")
            for ax in (axes[0], axes[2]):
                ax.axhline(r.base_error, color=c, lw=0.9, ls=":")
        refs = _lesion_references(axes, results, marked)
        axes[0].set_title("delete one unit")
        axes[0].set_xlabel("deleted unit index")
        axes[1].set_title("delete k random units\n(mean ± std over the random sets)")
        axes[1].set_xlabel("number of deleted units k")
        axes[2].set_title("swap units i and i+1")
        axes[2].set_xlabel("first unit of the swapped pair")
        for ax in axes:
            ax.set_ylabel("test error (%)")
        figstyle.legend_outside(fig, handles + refs)
        save_figure(fig, path)


def _lesion_references(axes: Any, results: Sequence[LesionResult], marked: set[int]) -> list[Any]:
    """The chance lines on every panel, and the legend entries of the reference marks."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out: list[Any] = [Line2D([], [], color="0.3", lw=0.9, ls=":", label="intact network (its colour)")]
    for c in sorted({r.chance for r in results if np.isfinite(r.chance)}):
        for ax in axes:
            ax.axhline(c, color="0.45", lw=1, ls="-.")
        out.append(Line2D([], [], color="0.45", lw=1, ls="-.", label=f"chance ({c:.0f}%)"))
    if marked:
        out.append(Patch(color="0.88", label="shape-changing unit"))
    return out
