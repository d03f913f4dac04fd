"""Margin heads for face embeddings: ArcFace, CosFace and the plain softmax classifier.

A face network is trained as a classifier of the training identities, and the embedding that leaves
the classifier is what verification compares. The margin heads change only the logit of each sample's
own identity, on the *cosine* between the L2-normalized embedding and the L2-normalized class weight:

- :class:`ArcFace` (Deng et al. 2019, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
  Sec. 2.1, Eq. 3): ``s * cos(theta_y + m)``, ``s = 64``, ``m = 0.5``; exactly arcface_torch's
  ``losses.ArcFace`` (insightface, ``recognition/arcface_torch/losses.py``): ``cos(theta + m)`` by the
  angle-sum formula, and beyond ``theta > pi - m`` (where ``cos(theta + m)`` would rise again) the
  reference's linear fall-back ``cos(theta) - sin(pi - m) * m`` (its ``theta``/``th`` threshold
  ``cos(pi - m)`` and ``sinmm``/``mm`` term); ``easy_margin`` applies the margin only where
  ``cos(theta) > 0``.
- :class:`CosFace` (Wang et al. 2018, "CosFace: Large Margin Cosine Loss", Eq. 4): ``s * (cos(theta_y) - m)``,
  ``s = 64``, ``m = 0.35`` (the paper's choice; arcface_torch's class defaults to 0.40).
- ``softmax``: no margin and no normalization: the network's own linear classifier (weight and bias).

:func:`cosine_logits` is arcface_torch's ``PartialFC`` without the sampling (every class is kept):
``linear(normalize(embedding), normalize(weight))`` clamped to [-1, 1], computed in fp32 even under
autocast (the reference casts the logits to float before the margin).

Deviations from the reference: labels equal to -1 are skipped as there, but the target logits are
replaced out of place (``torch.where`` on a one-hot mask) so autograd never sees an in-place write; and
``sin(theta)`` is ``sqrt(max(1 - cos^2, 1e-12))``: the reference's ``sqrt(1 - cos^2)`` has an infinite
gradient at ``cos = +-1``. The class weight is the backbone's own classifier weight
(``model.get_classifier().weight``), so a trained face network is an ordinary reslab model file.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ConfigError


def cosine_logits(embedding: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``cos(theta)`` between each embedding (N, D) and each class weight (C, D): (N, C), fp32, in [-1, 1]."""
    with torch.autocast(embedding.device.type, enabled=False):
        e = F.normalize(embedding.float(), dim=1)
        w = F.normalize(weight.float(), dim=1)
        return F.linear(e, w).clamp(-1.0, 1.0)


def _target_mask(cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One-hot (N, C) bool mask of each row's label; rows labelled -1 are all False."""
    valid = labels != -1
    mask = torch.zeros_like(cosine, dtype=torch.bool)
    rows = torch.nonzero(valid).flatten()
    mask[rows, labels[rows]] = True
    return mask


class ArcFace(nn.Module):
    """Additive angular margin on the target cosine: ``s * cos(theta_y + m)`` (see the module docstring)."""

    def __init__(self, s: float = 64.0, m: float = 0.5, easy_margin: bool = False) -> None:
        super().__init__()
        self.s, self.m, self.easy_margin = float(s), float(m), bool(easy_margin)
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.th = math.cos(math.pi - m)  # the reference's ``theta``: beyond it, theta + m > pi
        self.mm = math.sin(math.pi - m) * m  # the reference's ``sinmm``

    def forward(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = cosine.float()
        sine = (1.0 - cosine * cosine).clamp_min(1e-12).sqrt()
        phi = cosine * self.cos_m - sine * self.sin_m  # cos(theta + m)
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            phi = torch.where(cosine > self.th, phi, cosine - self.mm)
        return self.s * torch.where(_target_mask(cosine, labels), phi, cosine)

    def extra_repr(self) -> str:
        return f"s={self.s:g}, m={self.m:g}, easy_margin={self.easy_margin}"


class CosFace(nn.Module):
    """Additive cosine margin on the target cosine: ``s * (cos(theta_y) - m)``."""

    def __init__(self, s: float = 64.0, m: float = 0.35) -> None:
        super().__init__()
        self.s, self.m = float(s), float(m)

    def forward(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = cosine.float()
        return self.s * torch.where(_target_mask(cosine, labels), cosine - self.m, cosine)

    def extra_repr(self) -> str:
        return f"s={self.s:g}, m={self.m:g}"


MARGINS: dict[str, type[nn.Module] | None] = {"arcface": ArcFace, "cosface": CosFace, "softmax": None}


def make_margin(
    name: str, s: float | None = None, m: float | None = None, easy_margin: bool = False
) -> nn.Module | None:
    """The margin head called ``name`` (``None`` for ``softmax``: the plain linear classifier); ``s``/``m``
    default to the head's paper values. One line for an unknown name or a value out of range."""
    if name not in MARGINS:
        raise ConfigError(f"unknown head {name!r}; choose from {', '.join(MARGINS)}")
    cls = MARGINS[name]
    if cls is None:
        return None
    kwargs: dict[str, float | bool] = {}
    if s is not None:
        if not s > 0:
            raise ConfigError(f"head scale s must be > 0, got {s}")
        kwargs["s"] = float(s)
    if m is not None:
        if not 0 <= m < math.pi / 2:
            raise ConfigError(f"head margin m must be in [0, pi/2), got {m}")
        kwargs["m"] = float(m)
    if cls is ArcFace:
        kwargs["easy_margin"] = bool(easy_margin)
    return cls(**kwargs)
