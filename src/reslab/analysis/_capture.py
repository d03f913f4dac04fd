"""One forward pass that keeps, for every residual unit, its input, shortcut output, branch output and output.

The shortcut and branch outputs are re-wrapped (``t.view_as(t)``, same values) by forward hooks so that
they are distinct autograd nodes even when the shortcut is the identity (which returns its input
tensor itself): the gradient at a unit's input can then be split exactly into the part that flows
through the shortcut and the part that flows through the residual branch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class UnitTrace:
    x: torch.Tensor | None = None  # unit input
    s: torch.Tensor | None = None  # shortcut(x)
    f: torch.Tensor | None = None  # residual(x) (F, before gain and addition)
    y: torch.Tensor | None = None  # unit output


@dataclass
class Trace:
    logits: torch.Tensor
    loss: torch.Tensor
    units: list[UnitTrace] = field(default_factory=list)


@contextlib.contextmanager
def bn_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Everything in eval mode (no stochastic depth, no dropout); BatchNorm in ``mode`` ("train": batch
    statistics, as during training; "eval": running statistics). BN buffers are restored afterwards, so
    the measurement never changes the model."""
    if mode not in ("train", "eval"):
        raise ValueError(f"bn mode must be 'train' or 'eval', got {mode!r}")
    was_training = {m: m.training for m in model.modules()}
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False) if v is not None} for m in bns]
    model.eval()
    if mode == "train":
        for m in bns:
            m.train()
    try:
        yield model
    finally:
        with torch.no_grad():
            for m, st in zip(bns, saved):
                for k, v in st.items():
                    getattr(m, k).copy_(v)
        for m, t in was_training.items():
            m.training = t


def trace_forward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Trace:
    """Run ``model(x)`` with gradients, recording every unit; ``loss`` is the mean cross-entropy."""
    blocks = list(model.blocks)  # type: ignore[attr-defined]
    units = [UnitTrace() for _ in blocks]
    handles = []

    def pre(i: int):
        def hook(mod: nn.Module, args: tuple) -> None:
            units[i].x = args[0]

        return hook

    def post(i: int):
        def hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            units[i].y = out

        return hook

    def wrap(i: int, attr: str):
        def hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            out = out.view_as(out)
            setattr(units[i], attr, out)
            return out

        return hook

    try:
        for i, b in enumerate(blocks):
            handles.append(b.register_forward_pre_hook(pre(i)))
            handles.append(b.register_forward_hook(post(i)))
            handles.append(b.shortcut.register_forward_hook(wrap(i, "s")))
            handles.append(b.residual.register_forward_hook(wrap(i, "f")))
        x = x.detach().requires_grad_(True)  # so every activation is part of the graph, even if frozen
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    loss = torch.nn.functional.cross_entropy(logits.float(), y)
    return Trace(logits, loss, units)


def vjp(output: torch.Tensor | None, inp: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    """``grad^T d output / d inp`` (zeros where ``output`` does not depend on ``inp``)."""
    if output is None or grad is None or not output.requires_grad:
        return torch.zeros_like(inp)
    (g,) = torch.autograd.grad(output, inp, grad, retain_graph=True, allow_unused=True)
    return torch.zeros_like(inp) if g is None else g
