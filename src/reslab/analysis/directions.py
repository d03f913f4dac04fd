"""Directions in weight space, and a model moved along them (for :mod:`reslab.analysis.landscape`).

A direction is a tensor per parameter (or buffer), by module path. :func:`random_direction` draws a
Gaussian one and *filter-normalizes* it (Li et al. 2018, Sec. 4): each filter (slice along the output
dimension) is scaled to the norm of the matching filter of the weights, and 1-D parameters (BN weight
and bias, biases) get zero, so BN is not perturbed. :func:`line_direction` is the difference between two
checkpoints of the same architecture, every floating-point parameter and buffer included.
:class:`Perturbation` sets a model's state to ``base + sum_i c_i * dir_i`` and restores it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from reslab.errors import ConfigError

Direction = dict[str, torch.Tensor]


def random_direction(model: nn.Module, generator: torch.Generator | None = None) -> Direction:
    """A Gaussian direction over the model's parameters, filter-normalized; zero for 1-D parameters."""
    d: Direction = {}
    for name, p in model.named_parameters():
        if p.ndim <= 1:
            d[name] = torch.zeros_like(p, device="cpu", dtype=torch.float32)
            continue
        r = torch.randn(p.shape, generator=generator, dtype=torch.float32)
        d[name] = filter_normalize(r, p.detach().float().cpu())
    return d


def filter_normalize(direction: torch.Tensor, weight: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Scale each filter ``direction[i]`` to the norm of ``weight[i]`` (Li et al. 2018, Eq. in Sec. 4)."""
    if direction.ndim <= 1:
        return torch.zeros_like(direction)
    dn = direction.flatten(1).norm(dim=1).view(-1, *([1] * (direction.ndim - 1)))
    wn = weight.flatten(1).norm(dim=1).view(-1, *([1] * (weight.ndim - 1)))
    return direction * (wn / (dn + eps))


def line_direction(model: nn.Module, other: nn.Module) -> Direction:
    """``other - model`` over every floating-point parameter and buffer of ``model`` (on the CPU, float32);
    the two must have the same architecture."""
    a_state = {k: v for k, v in named_state(model).items() if v.is_floating_point()}
    b_state = named_state(other)
    for k, v in a_state.items():
        if k not in b_state or b_state[k].shape != v.shape:
            raise ConfigError(f"the two checkpoints differ in {k!r}: a line needs the same architecture")
    return {k: (b_state[k].float().cpu() - v.float().cpu()) for k, v in a_state.items()}


def named_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by module path (not state-dict names, which hooks may rename)."""
    state = dict(model.named_parameters())
    state.update(dict(model.named_buffers()))
    return state


class Perturbation:
    """Set a model's floating-point state to ``base + sum_i c_i * dir_i`` (restored by :meth:`restore`)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.model = model
        state = named_state(model)
        self.tensors = {n: state[n] for n in names}
        self.base = {n: t.detach().clone() for n, t in self.tensors.items()}

    @torch.no_grad()
    def set(self, coeffs: Sequence[float], dirs: Sequence[Direction]) -> None:
        for n, t in self.tensors.items():
            v = self.base[n].float().clone()
            for c, d in zip(coeffs, dirs):
                if c != 0.0 and n in d:
                    v.add_(d[n].to(v.device), alpha=float(c))
            t.copy_(v.to(t.dtype))

    @torch.no_grad()
    def restore(self) -> None:
        for n, t in self.tensors.items():
            t.copy_(self.base[n])
