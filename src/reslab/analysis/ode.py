"""The ODE reading of a residual network: is ``h + F(h)`` one small Euler step?

Chen et al. 2018 (*Neural Ordinary Differential Equations*, Sec. 1, Eq. 1) read a residual unit
``h_{t+1} = h_t + F(h_t, theta_t)`` as one Euler step of ``dh/dt = F(h, theta(t))``. The reading makes
three measurable predictions, one column each in ``ode.csv``:

1. **Small steps.** ``step = ||F(h)|| / ||h||`` per unit, where ``h = shortcut(x)`` is the state the
   branch is added to (the input itself for identity shortcuts) and ``F(h)`` the branch output before
   the addition; the mean over images of the per-image ratio. An Euler step is small: ``step << 1``.
   ``change = ||y - h|| / ||h||`` is what the unit actually does to the state (with the ReLU after the
   addition of post-activation units); for a plain unit ``y = relu(F(x))`` it is the only comparable
   number (plain units have no ``h +`` term: their "step" replaces the state).
2. **Descent direction.** ``cosine = cos(F(h), -dL/dz)`` with ``z = h + F(h)`` the sum (for a plain
   unit: the branch output), per image, averaged: Jastrzebski et al. 2018 (*Residual Connections
   Encourage Iterative Inference*, Sec. 4, Eq. 3) show by a first-order expansion
   ``L(h + F) ~ L(h) + F . dL/dh`` that residual units which lower the loss take steps with a positive
   cosine to the negative gradient, and measure it on trained ResNets.
3. **Smooth weights.** ``smoothness = ||theta_{n+1} - theta_n|| / ||theta_n||`` between neighbouring
   units of a stage (theta: the residual branch's convolution weights, concatenated; the first unit of
   a stage is compared with the second only when their shapes agree). Sander et al. 2022 (*Do Residual
   Neural Networks Discretize Neural Ordinary Differential Equations?*, Sec. 3-4): a ResNet approaches an
   ODE only when its weights vary smoothly with depth (this ratio going to 0 as depth grows); two
   independent draws of the same initialization give sqrt(2) ~ 1.41.

BN runs with batch statistics by default (``mode="train"``, as the gradient analysis; buffers restored).
:func:`explain` turns the numbers into sentences, each with the stated margin (``SMALL_STEP``,
``LARGE_STEP``, ``COSINE_MARGIN``, ``SMOOTH``, ``ROUGH``); between the two thresholds the verdict is
"intermediate", never forced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reslab.analysis._capture import bn_mode, trace_forward
from reslab.analysis.common import (
    blocks_of,
    fmt_num,
    new_figure,
    save_figure,
    unit_rows,
    write_csv,
    write_summary,
)
from reslab.analysis.targets import Target

SMALL_STEP = 0.5  # median ||F(h)|| / ||h|| below this: small steps
LARGE_STEP = 1.0  # above this: the branch is as large as the state, no Euler step
COSINE_MARGIN = 0.05  # |mean cosine| within this: no alignment (random directions give ~1/sqrt(dim))
SMOOTH = 0.5  # median ||theta_{n+1} - theta_n|| / ||theta_n|| below this: smooth in depth
ROUGH = 1.0  # above this: neighbours as different as independent draws (sqrt(2) ~ 1.41)


@dataclass
class ODEProfile:
    """Per-unit measurements of one network (index 0 = first unit); NaN where undefined."""

    label: str
    kind: str  # "plain", "residual" (post-activation) or "pre-activation"
    trained: bool
    stage: np.ndarray  # stage index of each unit
    step: np.ndarray  # ||F(h)|| / ||h||
    change: np.ndarray  # ||y - h|| / ||h||
    cosine: np.ndarray  # cos(F(h), -dL/dz)
    smoothness: np.ndarray  # ||theta_{n+1} - theta_n|| / ||theta_n|| (NaN for the last unit of a stage)

    def median(self, name: str) -> float:
        v = getattr(self, name)
        return float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")

    def mean(self, name: str) -> float:
        v = getattr(self, name)
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def kind_of(model: nn.Module) -> str:
    blocks = blocks_of(model)
    if not any(b.has_shortcut for b in blocks):
        return "plain"
    return "pre-activation" if not any(b.post_act for b in blocks) else "residual"


def _per_image_ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    n, d = num.flatten(1).double().norm(dim=1), den.flatten(1).double().norm(dim=1)
    ok = d > 0
    return float((n[ok] / d[ok]).mean()) if ok.any() else float("nan")


def _per_image_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    den = a.norm(dim=1) * b.norm(dim=1)
    ok = den > 0
    return float(((a * b).sum(1)[ok] / den[ok]).mean()) if ok.any() else float("nan")


def step_profile(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, mode: str = "train"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step, change, cosine) per unit on one batch (module docstring); one forward, one backward pass."""
    dev = next(model.parameters()).device
    blocks = blocks_of(model)
    with bn_mode(model, mode):
        tr = trace_forward(model, x.to(dev), y.to(dev))
        fs = [u.f for u in tr.units]
        grads = torch.autograd.grad(tr.loss, [f for f in fs if f is not None], allow_unused=True)
        gmap = {id(f): g for f, g in zip([f for f in fs if f is not None], grads)}
        n = len(blocks)
        step, change, cosine = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        with torch.no_grad():
            for i, u in enumerate(tr.units):
                if u.f is None or u.s is None:
                    continue
                h = u.s  # the state F is added to (plain units: x, option-A-padded where the shape changes)
                step[i] = _per_image_ratio(u.f, h)
                if u.y is not None and u.y.shape == h.shape:
                    change[i] = _per_image_ratio(u.y - h, h)
                g = gmap.get(id(u.f))
                if g is not None:  # dL/dF = dL/dz for z = h + F (gain 1, no dropped path in eval)
                    cosine[i] = _per_image_cosine(u.f, -g)
        del tr, grads, gmap
    return step, change, cosine


def weight_smoothness(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(smoothness, stage) per unit: ||theta_{n+1} - theta_n|| / ||theta_n|| over the branch's conv
    weights of unit n and the next unit of its stage (NaN for a stage's last unit or differing shapes)."""
    names = getattr(model, "stage_names", ())
    stages = [list(model.get_submodule(s)) for s in names] if names else [blocks_of(model)]
    out, stage_of = [], []
    for k, units in enumerate(stages):
        thetas = [
            [m.weight.detach() for m in b.residual.modules() if isinstance(m, nn.Conv2d)] for b in units
        ]
        for n in range(len(units)):
            stage_of.append(k)
            a = thetas[n]
            b = thetas[n + 1] if n + 1 < len(units) else None
            if b is None or [t.shape for t in a] != [t.shape for t in b] or not a:
                out.append(float("nan"))
                continue
            diff = sum(float((p.double() - q.double()).pow(2).sum()) for p, q in zip(a, b)) ** 0.5
            norm = sum(float(p.double().pow(2).sum()) for p in a) ** 0.5
            out.append(diff / norm if norm > 0 else float("nan"))
    return np.array(out), np.array(stage_of)


def ode_profile(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    mode: str = "train",
    label: str = "",
    trained: bool = False,
) -> ODEProfile:
    """All three measurements of ``model`` on the batch ``(x, y)``."""
    step, change, cosine = step_profile(model, x, y, mode=mode)
    smooth, stage = weight_smoothness(model)
    return ODEProfile(label, kind_of(model), trained, stage, step, change, cosine, smooth)


def run_ode(
    targets: Sequence[Target], out: Path, *, batch_size: int = 128, mode: str = "train"
) -> dict[str, Any]:
    """Measure every target on its first ``batch_size`` images; write ``ode.csv``, ``ode.png`` and
    ``summary.md``."""
    profiles = []
    for t in targets:
        x, y = t.data.x[:batch_size], t.data.y[:batch_size]
        profiles.append(ode_profile(t.model, x, y, mode=mode, label=t.label, trained=t.trained))
    write_csv(out / "ode.csv", [row for p in profiles for row in _unit_rows(p)])
    _plot(profiles, out / "ode.png")
    write_summary(
        out,
        "The ODE view: relative steps, descent alignment and weight smoothness per unit",
        targets,
        [_table(profiles, batch_size, mode), explain(profiles)],
        ["ode.csv", "ode.png"],
    )
    return {"profiles": profiles}


def _unit_rows(p: ODEProfile) -> list[dict[str, Any]]:
    """ode.csv: one row per unit."""
    head = {"target": p.label, "kind": p.kind, "trained": int(p.trained)}
    columns = {
        "stage": p.stage.astype(int),
        "step": p.step,
        "change": p.change,
        "cosine": p.cosine,
        "smoothness": p.smoothness,
    }
    return unit_rows(head, "unit", columns)


def _table(profiles: Sequence[ODEProfile], batch_size: int, mode: str) -> str:
    lines = [
        f"One batch of {batch_size} images, BatchNorm in {mode} mode. `step`: median over units of "
        "||F(h)|| / ||h||; `change`: median of ||y - h|| / ||h||; `cosine`: mean over units of "
        "cos(F(h), -dL/dz), `> 0`: the share of units with a positive cosine; `smoothness`: median of "
        "||theta_{n+1} - theta_n|| / ||theta_n|| within stages (independent draws: 1.41).",
        "",
        "| network | kind | state | units | step | change | cosine | > 0 | smoothness |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in profiles:
        pos = (
            float(np.mean(p.cosine[np.isfinite(p.cosine)] > 0))
            if np.isfinite(p.cosine).any()
            else float("nan")
        )
        lines.append(
            f"| {p.label} | {p.kind} | {'trained' if p.trained else 'init'} | {len(p.step)} | "
            f"{fmt_num(p.median('step'))} | {fmt_num(p.median('change'))} | {p.mean('cosine'):+.3f} | "
            f"{pos:.0%} | {fmt_num(p.median('smoothness'))} |"
        )
    return "\n".join(lines)


def _three_way(value: float, low: float, high: float) -> str:
    """'low' below ``low``, 'high' above ``high``, else 'between' (NaN: 'unknown')."""
    if not np.isfinite(value):
        return "unknown"
    return "low" if value < low else "high" if value > high else "between"


# The words for each verdict of :func:`_three_way`: a plain unit's change of state (it has no h + F form),
# a residual unit's step, and the weights' smoothness in depth.
_PLAIN_STEP_WORDS = {
    "low": "the state changes little per unit, although a plain unit has no h + F form to call an Euler step",
    "high": "every unit replaces the state by a new one of its size: no small-step (Euler) reading",
    "between": "the state changes by a sizeable fraction per unit",
    "unknown": "no step could be measured",
}
_STEP_WORDS = {
    "low": "its units take small steps, as an Euler discretization would",
    "high": "its branches are larger than the state: these are not small Euler steps",
    "between": "its steps are neither small nor larger than the state",
    "unknown": "no step could be measured",
}
_SMOOTH_WORDS = {
    "low": "the weights vary smoothly with depth, as an ODE limit requires (Sander et al. 2022)",
    "high": "the weights do not vary smoothly with depth: Sander et al. 2022's condition for an ODE limit is not met",
    "between": "the weights vary only partly smoothly with depth",
}


def explain(profiles: Sequence[ODEProfile]) -> str:
    """One sentence per network (its three verdicts, each derived from its number and the module's
    margins), then the verdict over the networks with shortcuts."""
    parts = [
        "**What the numbers show.** Margins: a median step below "
        f"{SMALL_STEP} is small, above {LARGE_STEP} larger than the state; a mean cosine within "
        f"±{COSINE_MARGIN} is no alignment; a median weight smoothness below {SMOOTH} is smooth, above {ROUGH} "
        "rough (independent draws give 1.41)."
    ]
    parts.extend(_network_sentence(p) for p in profiles)
    res = [p for p in profiles if p.kind != "plain"]
    if res:
        parts.append(_shortcut_verdict(res))
    parts.append("Single-batch measurements; the exact numbers vary with seed and batch.")
    return " ".join(parts)


def _network_sentence(p: ODEProfile) -> str:
    """The step (a plain unit's change of state), the cosine and the smoothness of one network."""
    state = "trained" if p.trained else "at initialization"
    plain = p.kind == "plain"
    s = p.median("change" if plain else "step")
    step = (_PLAIN_STEP_WORDS if plain else _STEP_WORDS)[_three_way(s, SMALL_STEP, LARGE_STEP)]
    what = "||y - x|| / ||x||" if plain else "||F(h)|| / ||h||"
    sentence = f"{p.label} ({p.kind}, {state}): median {what} = {fmt_num(s)}, {step}"
    c = p.mean("cosine")
    if np.isfinite(c):
        sentence += f"; mean cosine {c:+.3f}: {_cosine_words(c)}"
    sm = p.median("smoothness")
    v = _three_way(sm, SMOOTH, ROUGH)
    if v != "unknown":
        sentence += f"; weight smoothness {fmt_num(sm)}: {_SMOOTH_WORDS[v]}"
    return sentence + "."


def _cosine_words(c: float) -> str:
    if c > COSINE_MARGIN:
        return "the branch outputs point along the negative gradient (Jastrzebski et al. 2018's descent direction)"
    if c < -COSINE_MARGIN:
        return (
            "the branch outputs point against the negative gradient: to first order each step raises the loss"
        )
    return "the branch outputs are not aligned with the negative gradient"


def _shortcut_verdict(res: Sequence[ODEProfile]) -> str:
    """How many networks with shortcuts meet each of the three conditions, and whether the Euler-step
    reading fits them."""
    small = [p for p in res if _three_way(p.median("step"), SMALL_STEP, LARGE_STEP) == "low"]
    smooth = [p for p in res if _three_way(p.median("smoothness"), SMOOTH, ROUGH) == "low"]
    aligned = [p for p in res if p.mean("cosine") > COSINE_MARGIN]
    summary = (
        f"Over the {len(res)} networks with shortcuts: {len(small)} take small steps, {len(aligned)} step along "
        f"the negative gradient, {len(smooth)} have smooth weights. "
    )
    if len(small) == len(aligned) == len(smooth) == len(res):
        return summary + "All three hold for every one of them: the Euler-step reading fits."
    if small and len(smooth) < len(res):
        return summary + (
            "Small steps alone do not make an ODE: without smooth weights each unit is a different vector field, "
            "so these networks are at most a sequence of small updates, not the discretization of one "
            "continuous flow"
            + (
                "; their steps do descend the loss (iterative refinement, Jastrzebski et al. 2018)."
                if aligned
                else "; nor are their steps aligned with the descent direction, so not even the "
                "iterative-refinement reading (Jastrzebski et al. 2018) is seen here."
            )
        )
    return summary + "The Euler-step reading does not fit these networks as measured."


def _state_label(p: ODEProfile) -> str:
    """The legend's name of ``p``: its label, with its state when the label does not say it."""
    return p.label if "(" in p.label else f"{p.label} ({'trained' if p.trained else 'initialized'})"


def _plot(profiles: Sequence[ODEProfile], path: Path) -> None:
    """Three panels per unit: step size, cosine to the descent direction, weight change between
    neighbours. One colour per network (:mod:`reslab.figstyle`, as in every figure) and its family's
    marker; trained solid, initialized dashed; a plain net drawn hollow and larger under the others, so a
    curve it shares with a residual net (the same weights at initialization) stays visible. The grey
    reference lines are named in the legend, which sits outside the panels."""
    from reslab import figstyle

    with figstyle.style():
        fig, axes = new_figure(1, 3, figsize=(15, 4.2), layout="constrained")
        handles = []
        for p in sorted(profiles, key=lambda p: p.kind != "plain"):
            idx = np.arange(len(p.step))
            variant, _ = figstyle.network_of(p.label)
            plain = p.kind == "plain"
            kw = {"color": figstyle.network_colour(p.label), "ls": "-" if p.trained else (0, (4, 2)),
                  "marker": figstyle.marker(variant or ("plain" if plain else "resnet")),
                  "ms": 6.5 if plain else 3.5, "mfc": "white" if plain else None, "lw": 1.3,
                  "label": _state_label(p)}  # fmt: skip
            handles += axes[0].plot(idx, p.change if plain else p.step, **kw)
            axes[1].plot(idx, p.cosine, **kw)
            axes[2].plot(idx, p.smoothness, **kw)
        axes[0].set_yscale("log")
        refs = [
            axes[0].axhline(SMALL_STEP, color="0.5", lw=0.9, ls=":", label=f"{SMALL_STEP}: the summary's small-step margin"),
            axes[1].axhline(0, color="0.5", lw=0.9, ls="-", label="0: no alignment with the descent direction"),
            axes[2].axhline(2**0.5, color="0.5", lw=0.9, ls="-.", label="√2 ≈ 1.41: two independent draws"),
        ]  # fmt: skip
        axes[0].set_title("relative step ‖F(h)‖/‖h‖ (plain: ‖y−x‖/‖x‖)")
        axes[1].set_title("cos(F(h), −dL/dz)")
        axes[2].set_title("‖θₙ₊₁ − θₙ‖ / ‖θₙ‖ within a stage")
        for ax in axes:
            ax.set_xlabel("unit (block) index")
        figstyle.legend_outside(fig, handles + refs)
        save_figure(fig, path)
