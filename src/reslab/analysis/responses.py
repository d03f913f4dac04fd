"""Layer responses (He et al. 2016, Sec. 4.2, Fig. 7): the standard deviation of each residual branch's
output F(x) over test data, after the branch's last BN and before the addition (for plain units the same
place: after the BN, before the ReLU), read with a forward hook on ``unit.residual``, BN in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reslab.analysis._capture import bn_mode
from reslab.analysis.common import (
    EvalData,
    Target,
    blocks_of,
    fmt_num,
    new_figure,
    save_figure,
    write_csv,
    write_summary,
)


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
    rows = []
    for p in profiles:
        order = np.argsort(-p.std)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        for i in range(len(p.std)):
            rows.append(
                {
                    "target": p.label,
                    "block": i,
                    "std": float(p.std[i]),
                    "channel_std": float(p.channel_std[i]),
                    "rank": int(rank[i]),
                }
            )
    write_csv(out / "responses.csv", rows)
    _plot(profiles, out / "responses.png")
    write_summary(
        out,
        "Layer responses: std of each residual branch's output",
        targets,
        [_table(profiles), explain(profiles)],
        ["responses.csv", "responses.png"],
    )
    return {"profiles": profiles}


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


def explain(profiles: Sequence[ResponseProfile]) -> str:
    parts = ["**What the numbers show.**"]
    res = [p for p in profiles if not p.plain]
    plain = [p for p in profiles if p.plain]
    if res and plain:
        r, q = (
            float(np.nanmean([np.nanmean(p.std) for p in res])),
            float(np.nanmean([np.nanmean(p.std) for p in plain])),
        )
        rel = "smaller than" if r < q else "larger than" if r > q else "equal to"
        parts.append(
            f"The mean branch-response std of the residual networks ({fmt_num(r)}) is {rel} that of the plain "
            f"networks ({fmt_num(q)})."
        )
        if abs(r - q) < 0.1 * max(r, q):
            parts.append(
                f"The difference is only {abs(r - q) / max(r, q):.0%}: too small to confirm or refute He et al.'s "
                "observation (Fig. 7: residual responses smaller than plain ones) for these networks; He et al. "
                "measured fully trained CIFAR-10 networks."
            )
        elif r < q:
            parts.append(
                "This is He et al.'s observation (Fig. 7): residual functions are generally closer to zero than "
                "the unreferenced functions a plain net must learn, so their responses are smaller."
            )
        else:
            parts.append(
                "He et al. (Fig. 7) found the opposite on trained CIFAR-10 networks (residual responses smaller); "
                "here it does not hold, so these networks (their training, or lack of it) differ from that setting."
            )
    for p in res:
        first, last = p.std[: max(1, len(p.std) // 3)], p.std[-max(1, len(p.std) // 3) :]
        parts.append(
            f"In {p.label} the first third of the units average {fmt_num(float(np.nanmean(first)))} and the last "
            f"third {fmt_num(float(np.nanmean(last)))}."
        )
    if any(not p.trained for p in profiles):
        parts.append(
            "For freshly initialized networks in eval mode the BN layers still hold their initial running "
            "statistics (mean 0, variance 1), so the responses reflect the raw initialization scale rather "
            "than anything learned; the comparison is meaningful for trained checkpoints."
        )
    return " ".join(parts)


def _plot(profiles: Sequence[ResponseProfile], path: Path) -> None:
    fig, axes = new_figure(1, 2, figsize=(12, 4.5))
    for p in profiles:
        style = "--" if p.plain else "-"
        axes[0].plot(np.arange(len(p.std)), p.std, style, marker=".", label=p.label)
        axes[1].plot(np.arange(len(p.std)), np.sort(p.std)[::-1], style, marker=".", label=p.label)
    axes[0].set_title("std of branch output, layer order")
    axes[0].set_xlabel("unit (block) index")
    axes[1].set_title("std of branch output, sorted by magnitude")
    axes[1].set_xlabel("rank")
    for ax in axes:
        ax.set_ylabel("std")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    save_figure(fig, path)
