"""What every reslab network and every residual unit exposes, so analysis code never walks module paths.

A residual unit computes (He et al. 2016, Eq. 1 and 2)::

    y = act(shortcut(x) + gain * drop_path(residual(x)))

``residual`` is F, the residual branch (for post-activation units it ends with its last BN, so a forward
hook on it sees F(x) before the addition); ``shortcut`` is the identity, option A (zero-padded identity
with stride-2 subsampling) or a projection (options B/C: 1x1 conv + BN). Plain units have no shortcut
term (``has_shortcut = False``) but still keep the option-A ``shortcut`` module: it is the path a
*deleted* plain unit uses, so a lesion can be applied to any network.

Controls (plain attributes, so they survive ``torch.export`` tracing as constants):

- ``unit.deleted = True``: the unit returns ``shortcut(x)``: the block is removed and the signal goes
  through its shortcut alone (Veit et al. 2016, Sec. 4 "lesion study").
- ``unit.gain = 0.0``: silences the residual branch but keeps the activation after the addition
  (``y = act(shortcut(x))``); other values scale F.
- ``unit.drop_prob``: stochastic depth (Huang et al. 2016), set by the model's ``drop_path_rate``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth, per sample: zero the branch of a random subset of the batch, rescale the rest.

    Deviation from Huang et al. 2016 (who drop the block for the whole mini-batch and rescale at test
    time): per-sample dropping with inverted scaling, as timm and torchvision do.
    """
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class ResidualUnit(nn.Module):
    """Base of every block in ``model.blocks``; subclasses build ``residual`` and ``shortcut``."""

    residual: nn.Module
    shortcut: nn.Module
    has_shortcut: bool = True
    post_act: bool = True  # ReLU after the addition (original ResNet) or not (pre-activation)

    def __init__(self) -> None:
        super().__init__()
        self.deleted = False
        self.gain = 1.0
        self.drop_prob = 0.0

    def merge(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        branch = drop_path(branch, self.drop_prob, self.training)
        if self.gain != 1.0:
            branch = branch * self.gain
        out = shortcut + branch if self.has_shortcut else branch
        return torch.relu(out) if self.post_act else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deleted:
            return self.shortcut(x)
        return self.merge(self.shortcut(x), self.residual(x))

    def zero_init_last(self) -> None:
        """Zero the last scale of the residual branch so that F(x) = 0 at initialization (Goyal et al.
        2017): the last BN's gamma for post-activation units, the last conv for pre-activation units."""
        kind = (nn.BatchNorm2d, nn.BatchNorm3d) if self.post_act else (nn.Conv2d, nn.Conv3d)
        last = [m for m in self.residual.modules() if isinstance(m, kind)][-1]
        nn.init.zeros_(last.weight)

    def extra_repr(self) -> str:
        flags = [f"deleted={self.deleted}"] if self.deleted else []
        if self.gain != 1.0:
            flags.append(f"gain={self.gain}")
        if self.drop_prob:
            flags.append(f"drop_prob={self.drop_prob:.3f}")
        return ", ".join(flags)


@contextlib.contextmanager
def deleted_blocks(model: nn.Module, indices: Iterable[int]) -> Iterator[nn.Module]:
    """Temporarily delete ``model.blocks[i]`` for each ``i`` (identity through the shortcut)."""
    blocks = model.blocks  # type: ignore[attr-defined]
    chosen = [blocks[i] for i in indices]
    saved = [b.deleted for b in chosen]
    try:
        for b in chosen:
            b.deleted = True
        yield model
    finally:
        for b, s in zip(chosen, saved):
            b.deleted = s


def stage_units(model: nn.Module) -> list[ResidualUnit]:
    """The units of ``model``'s stages (``model.stage_names``, each a sequence of units) in forward order:
    what a network whose stages hold only its units returns as ``blocks``."""
    return [u for name in model.stage_names for u in model.get_submodule(name)]


def set_drop_path(blocks: list[ResidualUnit], rate: float) -> None:
    """Stochastic depth rate increasing linearly from 0 to ``rate`` over the blocks (Huang et al. 2016)."""
    if not 0.0 <= rate < 1.0:
        from reslab.errors import ConfigError

        raise ConfigError(f"drop_path_rate must be in [0, 1), got {rate}")
    n = len(blocks)
    for i, b in enumerate(blocks):
        b.drop_prob = rate * (i + 1) / n if n else 0.0


class ClassifierHead:
    """``get_classifier`` / ``reset_classifier`` for a network whose last layer is the module named
    ``classifier_attr`` (``fc`` as in torchvision's ResNets; DenseNet's is ``classifier``)."""

    classifier_attr = "fc"

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_attr)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier for ``num_classes`` outputs (0: none, the model returns features)."""
        old = self.get_classifier()
        w = old.weight if isinstance(old, nn.Linear) else next(self.parameters())  # type: ignore[attr-defined]
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()  # type: ignore[attr-defined]
        setattr(self, self.classifier_attr, head.to(device=w.device, dtype=w.dtype))
        self.num_classes = num_classes
        if getattr(self, "model_kwargs", None):
            self.model_kwargs["num_classes"] = num_classes  # type: ignore[attr-defined]
