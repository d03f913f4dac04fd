"""Layer responses (He et al. 2016, Sec. 4.2, Fig. 7): the standard deviation of each residual branch's
output F(x) over test data, after the branch's last BN and before the addition (for plain units the same
place: after the BN, before the ReLU), read with a forward hook on ``unit.residual``, BN in eval mode.

He et al. compare plain-20/56 and ResNet-20/56/110 trained on CIFAR-10 and observe (i) residual responses
are generally smaller than plain ones and (ii) the deeper ResNet has the smaller responses. A few units
with very large responses (in a briefly trained plain net, one layer at 6x the others) would dominate a
mean, so both observations are judged here on the *median* over units, a difference counting when it
exceeds :data:`MARGIN` (10%) of the larger median; the figure uses a log axis for the same reason. A
fall within the margin decides nothing, even where the medians fall at every step: with one network per
depth that order is a post-hoc reading, not a planned test (docs/evidence.md). Where plain nets of
several depths are measured too, the summary says whether their medians fall with depth as well, in
which case a fall with depth is not shown to be specific to residual branches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reslab.analysis._capture import bn_mode
from reslab.analysis.common import (
    blocks_of,
    fmt_num,
    new_figure,
    save_figure,
    unit_rows,
    write_csv,
    write_summary,
)
from reslab.analysis.targets import EvalData, Target

MARGIN = 0.10  # relative difference of medians that counts as "smaller"


@dataclass
class ResponseProfile:
    label: str
    std: np.ndarray  # std over every element (N, C, H, W) of F(x), per unit
    channel_std: np.ndarray  # mean over channels of the per-channel std over (N, H, W)
    plain: bool
    trained: bool


@torch.no_grad()
def response_std(model: nn.Module, data: EvalData, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(overall std, mean per-channel std) of each unit's branch output over ``data`` (float64 sums)."""
    blocks = blocks_of(model)
    dev = next(model.parameters()).device
    n = len(blocks)
    tot: list[list[Any]] = [[0, 0.0, 0.0] for _ in range(n)]  # count, sum, sum of squares
    ch: list[list[Any]] = [[0, None, None] for _ in range(n)]

    def hook(i: int):
        def f(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            o = out.detach().double()
            dims = [d for d in range(o.ndim) if d != 1]
            tot[i][0] += o.numel()
            tot[i][1] += o.sum().item()
            tot[i][2] += o.pow(2).sum().item()
            cnt = o.numel() // o.shape[1]
            s1, s2 = o.sum(dims), o.pow(2).sum(dims)
            ch[i][0] += cnt
            ch[i][1] = s1 if ch[i][1] is None else ch[i][1] + s1
            ch[i][2] = s2 if ch[i][2] is None else ch[i][2] + s2

        return f

    handles = [b.residual.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]
    try:
        with bn_mode(model, "eval"):
            for x, _ in data.batches(batch_size, dev):
                model(x)
    finally:
        for h in handles:
            h.remove()
    std = np.full(n, np.nan)
    cstd = np.full(n, np.nan)
    for i in range(n):
        c, s1, s2 = tot[i]
        if c:
            m = s1 / c
            std[i] = float(np.sqrt(max(s2 / c - m * m, 0.0)))
            cc, a, b = ch[i]
            mc = a / cc
            cstd[i] = float(torch.sqrt((b / cc - mc * mc).clamp_min(0)).mean().item())
    return std, cstd


def run_responses(targets: Sequence[Target], out: Path, *, batch_size: int = 256) -> dict[str, Any]:
    profiles = []
    for t in targets:
        std, cstd = response_std(t.model, t.data, batch_size=batch_size)
        plain = not any(getattr(b, "has_shortcut", True) for b in blocks_of(t.model))
        profiles.append(ResponseProfile(t.label, std, cstd, plain, t.trained))
    write_csv(out / "responses.csv", [row for p in profiles for row in _unit_rows(p)])
    _plot(profiles, out / "responses.png")
    write_summary(
        out,
        "Layer responses: std of each residual branch's output",
        targets,
        [_table(profiles), explain(profiles)],
        ["responses.csv", "responses.png"],
    )
    return {"profiles": profiles}


def _unit_rows(p: ResponseProfile) -> list[dict[str, Any]]:
    """responses.csv: one row per unit; ``rank`` 0 is the strongest response."""
    order = np.argsort(-p.std)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return unit_rows({"target": p.label}, "block", {"std": p.std, "channel_std": p.channel_std, "rank": rank})


def _table(profiles: Sequence[ResponseProfile]) -> str:
    lines = [
        "Std of F(x) over every element of the branch output (after its last BN, before the addition), "
        "BN in eval mode (running statistics). `channel std` is the mean over channels of the per-channel std.",
        "",
        "| network | units | mean std | median std | min | max | mean channel std |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in profiles:
        lines.append(
            f"| {p.label} | {len(p.std)} | {fmt_num(float(np.nanmean(p.std)))} | {fmt_num(float(np.nanmedian(p.std)))} "
            f"| {fmt_num(float(np.nanmin(p.std)))} | {fmt_num(float(np.nanmax(p.std)))} "
            f"| {fmt_num(float(np.nanmean(p.channel_std)))} |"
        )
    return "\n".join(lines)


def _median(p: ResponseProfile) -> float:
    return float(np.nanmedian(p.std))


def _rel(smaller: float, larger: float) -> float:
    """How much smaller the first is, relative to the larger of the two (positive: it is smaller)."""
    top = max(smaller, larger)
    return (larger - smaller) / top if top > 0 else 0.0


def explain(profiles: Sequence[ResponseProfile], margin: float = MARGIN) -> str:
    """The two observations of He et al.'s Fig. 7, each decided on medians with ``margin``."""
    parts = ["**What the numbers show.**"]
    res = sorted((p for p in profiles if not p.plain), key=lambda p: len(p.std))
    plain = [p for p in profiles if p.plain]
    if res and plain:
        parts.append(_residual_against_plain(res, plain, margin))
    if len(res) >= 2:
        parts.append(_deeper_against_shallower(res, margin))
        plain_by_depth = sorted(plain, key=lambda p: len(p.std))
        if len({len(p.std) for p in plain_by_depth}) >= 2 and len(plain_by_depth) == len(
            {len(p.std) for p in plain_by_depth}
        ):
            parts.append(_plain_with_depth(plain_by_depth))
    for p in res:
        third = max(1, len(p.std) // 3)
        parts.append(
            f"In {p.label} the median of the first third of the units is {fmt_num(float(np.nanmedian(p.std[:third])))} "
            f"and of the last third {fmt_num(float(np.nanmedian(p.std[-third:])))}."
        )
    if any(not p.trained for p in profiles):
        parts.append(
            "For freshly initialized networks in eval mode the BN layers still hold their initial running "
            "statistics (mean 0, variance 1), so the responses reflect the raw initialization scale rather "
            "than anything learned; the comparison is meaningful for trained checkpoints."
        )
    return " ".join(parts)


def _residual_against_plain(
    res: Sequence[ResponseProfile], plain: Sequence[ResponseProfile], margin: float
) -> str:
    """Observation (i): the residual networks' responses are smaller than the plain networks'."""
    r = float(np.median([_median(p) for p in res]))
    q = float(np.median([_median(p) for p in plain]))
    rel = _rel(r, q)
    return (
        f"The median branch-response std of the residual networks is {fmt_num(r)} against {fmt_num(q)} for "
        f"the plain networks (medians over units; a difference counts beyond {margin:.0%} of the larger): "
        + (
            f"{rel:.0%} smaller, He et al.'s observation (Fig. 7): residual functions are generally closer "
            "to zero than the unreferenced functions a plain net must learn."
            if rel > margin
            else f"{-rel:.0%} larger, the opposite of He et al.'s Fig. 7 (trained CIFAR-10 networks)."
            if rel < -margin
            else f"they differ by {abs(rel):.0%}, within the margin: these networks do not decide He et "
            "al.'s observation (Fig. 7, fully trained CIFAR-10 networks) either way."
        )
    )


def _deeper_against_shallower(res: Sequence[ResponseProfile], margin: float) -> str:
    """Observation (ii): the deeper ResNet's responses are smaller (``res`` in depth order), decided by the
    margin alone. With one net per depth and three or more depths the medians are listed in depth order;
    a fall at every step within the margin is reported as such and decides nothing (a post-hoc order on
    one network per depth is not a planned test)."""
    lo, hi = res[0], res[-1]
    medians = [_median(p) for p in res]
    rel = _rel(medians[-1], medians[0])
    trend, falls = "", False
    if len(res) >= 3 and len({len(p.std) for p in res}) == len(res):  # one net per depth
        falls = all(b < a for a, b in pairwise(medians))
        trend = (
            "; in depth order "
            + ", ".join(f"{p.label} {fmt_num(m)}" for p, m in zip(res, medians))
            + (
                ", each deeper net's median below the shallower one's"
                if falls
                else ", not falling at every step"
            )
        )
    return (
        f"Between depths, the median is {fmt_num(medians[0])} for {lo.label} and {fmt_num(medians[-1])} for "
        f"{hi.label}{trend}: "
        + (
            f"the deeper ResNet's responses are {rel:.0%} smaller, as in Fig. 7 (each unit of a deeper net "
            "modifies the signal less)."
            if rel > margin
            else f"the deeper ResNet's responses are {-rel:.0%} larger, unlike Fig. 7."
            if rel < -margin
            else f"the fall is {rel:.0%}, within the {margin:.0%} margin, so depth's effect is not decided "
            "here; that the medians fall at every step is an ordering of one network per depth, read after "
            "the margin failed, not a planned test, and decides nothing."
            if falls
            else f"within {margin:.0%} of each other, so depth's effect is not decided here."
        )
    )


def _plain_with_depth(plain: Sequence[ResponseProfile]) -> str:
    """Whether the plain nets' medians also fall with depth (``plain`` in depth order, one net per depth):
    if they do, a fall with depth is not shown to be a property of residual branches."""
    medians = [_median(p) for p in plain]
    listing = " → ".join(f"{fmt_num(m)} ({p.label})" for p, m in zip(plain, medians))
    if all(b < a for a, b in pairwise(medians)):
        return (
            f"The plain nets' medians fall with depth too ({listing}), so a fall with depth is not shown to "
            "be specific to residual branches."
        )
    return f"The plain nets' medians do not fall at every step in depth ({listing})."


def _plot(profiles: Sequence[ResponseProfile], path: Path) -> None:
    """He et al.'s Fig. 7: std per unit in layer order (top) and sorted (bottom); here side by side, on
    a log axis (one large unit must not flatten the rest). One colour per depth; plain dashed."""
    fig, axes = new_figure(1, 2, figsize=(12, 4.5))
    units = sorted({len(p.std) for p in profiles})
    colours = {n: f"C{i}" for i, n in enumerate(units)}
    for p in profiles:
        kw = {"ls": "--" if p.plain else "-", "marker": ".", "label": p.label, "color": colours[len(p.std)]}
        axes[0].plot(np.arange(len(p.std)), p.std, **kw)
        axes[1].plot(np.arange(len(p.std)), np.sort(p.std)[::-1], **kw)
    axes[0].set_title("std of branch output, layer order")
    axes[0].set_xlabel("unit (block) index")
    axes[1].set_title("std of branch output, sorted by magnitude")
    axes[1].set_xlabel("rank")
    for ax in axes:
        ax.set_ylabel("std of F(x) (log scale)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()  # the log axis's tick labels are wide: keep the right panel's label off the left
    fig.text(0.01, -0.02, "solid: ResNets, dashed: plain nets; colour: depth", fontsize=8, color="0.35")
    save_figure(fig, path)
