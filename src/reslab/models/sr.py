"""Residual networks for single-image super-resolution: low-resolution images (N, C, h, w) in [0, 1] ->
images (N, C, s h, s w) on the same scale, ``s = model.scale`` (2 or 4).

- SRResNet (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution Using a Generative
  Adversarial Network", Sec. 2.2 and Fig. 4, the generator trained with the MSE loss alone): a 9x9 head
  with PReLU, 16 residual units (3x3 conv, BN, PReLU, 3x3 conv, BN; no activation after the addition), a
  3x3 conv + BN closed by a skip from the head's output, one (3x3 conv to 256 channels, pixel shuffle x2,
  PReLU) per factor 2, and a 9x9 conv to the image.
- EDSR-baseline (Lim et al. 2017, "Enhanced Deep Residual Networks for Single Image Super-Resolution",
  Sec. 3.1, Fig. 2 and 3, Table 1): the same shape without BN and with ReLU inside the units, 3x3 head and
  tail, no activation in the upsampler, optional residual scaling (``res_scale``, Sec. 3.2; 1 in the
  baseline), and the DIV2K mean subtracted from the input and added back to the output.

Every unit is a :class:`~reslab.models.base.ResidualUnit` (identity ``shortcut``, ``post_act = False``), so
``model.blocks``, lesions and gradient profiles work as for the classifiers. The ablation of the residual
claim: ``residual=False`` gives plain units (``y = F(x)``; the identity remains only as the path of a
deleted unit) and ``global_skip=False`` removes the skip around the body.

Deviations: images are on the 0-1 scale (Ledig et al. scale HR targets to [-1, 1]; EDSR's code works on
0-255 and subtracts the mean with a frozen 1x1 conv, here a buffer, so it is not counted as parameters);
PReLUs have one slope each (the paper does not say; PyTorch's default); convolutions followed by BN have
no bias; all layers keep PyTorch's default initialization, as EDSR's code does. State-dict names are
reslab's own (``head``, ``body.i.conv1``, ``body_end``, ``upsample``, ``tail``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.models.base import ResidualUnit
from reslab.models.registry import register_model

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)  # EDSR's MeanShift (RGB, 0-1 scale)


def conv(cin: int, cout: int, k: int = 3, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


def activation(kind: str) -> nn.Module:
    if kind not in ("prelu", "relu"):
        raise ConfigError(f"act must be 'prelu' or 'relu', got {kind!r}")
    return nn.PReLU() if kind == "prelu" else nn.ReLU()


class Scale(nn.Module):
    """Multiply by a constant: EDSR's residual scaling (Lim et al. 2017, Sec. 3.2)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return str(self.factor)


class SRUnit(ResidualUnit):
    """conv3x3 [BN] act conv3x3 [BN] [x res_scale], identity shortcut, nothing after the addition (Ledig et
    al. 2017, Fig. 4; Lim et al. 2017, Fig. 2c). ``residual=False``: the plain twin, ``y = F(x)``."""

    post_act = False

    def __init__(self, width: int, act: str, bn: bool, residual: bool = True, res_scale: float = 1.0):
        super().__init__()
        layers: dict[str, nn.Module] = {"conv1": conv(width, width, bias=not bn)}
        layers.update({"bn1": nn.BatchNorm2d(width)} if bn else {})
        layers.update(act=activation(act), conv2=conv(width, width, bias=not bn))
        layers.update({"bn2": nn.BatchNorm2d(width)} if bn else {})
        layers.update({"scale": Scale(res_scale)} if res_scale != 1.0 else {})
        self.residual = nn.Sequential(OrderedDict(layers))
        self.shortcut = nn.Identity()
        self.has_shortcut = residual


class SRResNet(nn.Module):
    """``head`` -> ``body`` (residual units) -> ``body_end`` (+ the head's output: the global skip) ->
    ``upsample`` (log2(scale) x (conv to 4 x width, pixel shuffle x2 [, act])) -> ``tail``.

    ``act``/``bn``/``kernel`` pick SRResNet (PReLU, BN, 9x9 head and tail) or EDSR (ReLU, no BN, 3x3);
    ``mean`` is subtracted from the input and added to the output (EDSR); ``upsample_act`` puts the
    activation after each pixel shuffle (SRResNet). Input: images (N, C, h, w) on the 0-1 scale.
    """

    def __init__(
        self,
        scale: int,
        *,
        units: int = 16,
        width: int = 64,
        act: str = "prelu",
        bn: bool = True,
        kernel: int = 9,
        upsample_act: bool = True,
        mean: tuple[float, ...] | None = None,
        residual: bool = True,
        global_skip: bool = True,
        res_scale: float = 1.0,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if scale not in (2, 4, 8):
            raise ConfigError(f"scale must be 2, 4 or 8, got {scale}")
        if units < 1 or width < 1:
            raise ConfigError(f"units and width must be positive, got {units}, {width}")
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}
        self.scale, self.in_chans, self.num_features = scale, in_chans, width
        self.global_skip = global_skip
        if mean is not None and len(mean) != in_chans:
            raise ConfigError(f"mean needs one value per channel ({in_chans}), got {len(mean)}")
        shift = torch.tensor(mean or (0.0,) * in_chans).view(1, -1, 1, 1)
        self.register_buffer("mean", shift, persistent=False)  # set by the builder, not a weight
        self.head = nn.Sequential(
            conv(in_chans, width, kernel), *([activation(act)] if act == "prelu" else [])
        )
        self.body = nn.Sequential(*(SRUnit(width, act, bn, residual, res_scale) for _ in range(units)))
        self.body_end = nn.Sequential(
            conv(width, width, bias=not bn), *([nn.BatchNorm2d(width)] if bn else [])
        )
        steps: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            steps += [conv(width, 4 * width), nn.PixelShuffle(2)] + (
                [activation(act)] if upsample_act else []
            )
        self.upsample = nn.Sequential(*steps)
        self.tail = conv(width, in_chans, kernel)
        self.stem_names: tuple[str, ...] = ("head",)
        self.stage_names: tuple[str, ...] = ("body",)

    @property
    def blocks(self) -> list[ResidualUnit]:
        """The residual units in forward order."""
        return list(self.body)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The body's output (plus the global skip) at the input's resolution: (N, width, h, w)."""
        x = self.head(x - self.mean)
        y = self.body_end(self.body(x))
        return y + x if self.global_skip else y

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.forward_features(x)]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Features -> the upscaled image."""
        return self.tail(self.upsample(x)) + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ConfigError(f"super-resolution models take images (N, C, H, W), got shape {tuple(x.shape)}")
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------------ the models

_LEDIG = "Ledig et al. 2017, Photo-Realistic Single Image Super-Resolution Using a GAN, Sec. 2.2, Fig. 4"
_LIM = "Lim et al. 2017, Enhanced Deep Residual Networks for Single Image Super-Resolution, Table 1"
_SR = {"num_classes": 0, "task": "super-resolution"}


def edsr(scale: int, *, in_chans: int = 3, **kw: Any) -> SRResNet:
    """EDSR's layers (Lim et al. 2017, Fig. 3): ReLU, no BN, 3x3 head and tail, DIV2K mean (its grey level
    for other than 3 channels)."""
    mean = DIV2K_MEAN if in_chans == 3 else (sum(DIV2K_MEAN) / 3,) * in_chans
    layers = {"act": "relu", "bn": False, "kernel": 3, "upsample_act": False, "mean": mean}
    return SRResNet(scale, in_chans=in_chans, **(layers | kw))


@register_model(family="srresnet", depth=36, paper=_LEDIG, input_size=(3, 48, 48), **_SR)
def srresnet_x2(**kw: Any) -> SRResNet:
    """SRResNet x2: 16 units of 64 channels with BN and PReLU, 9x9 head and tail, one pixel shuffle."""
    return SRResNet(2, **kw)


@register_model(family="srresnet", depth=37, paper=_LEDIG, input_size=(3, 24, 24), **_SR)
def srresnet_x4(**kw: Any) -> SRResNet:
    """SRResNet x4 (the paper's): 16 units of 64 channels with BN and PReLU, two pixel shuffles."""
    return SRResNet(4, **kw)


@register_model(family="edsr", depth=36, paper=_LIM, input_size=(3, 48, 48), **_SR)
def edsr_baseline_x2(**kw: Any) -> SRResNet:
    """EDSR-baseline x2: 16 units of 64 channels, no BN, ReLU, 3x3 head and tail (1.37M parameters)."""
    return edsr(2, **kw)


@register_model(family="edsr", depth=37, paper=_LIM, input_size=(3, 48, 48), **_SR)
def edsr_baseline_x4(**kw: Any) -> SRResNet:
    """EDSR-baseline x4: 16 units of 64 channels, no BN, ReLU, 3x3 head and tail (1.52M parameters)."""
    return edsr(4, **kw)
