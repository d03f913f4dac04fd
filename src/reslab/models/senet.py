"""Squeeze-and-excitation ResNets (Hu et al. 2018, *Squeeze-and-Excitation Networks*, TPAMI).

An SE module recalibrates the channels of the residual branch before the addition (Sec. 3, Eq. 2-4 and
Fig. 3 "SE-ResNet module")::

    z = mean_{h,w} F(x)                     # squeeze: global average pooling, C numbers per image
    s = sigmoid(W2 relu(W1 z))              # excitation: bottleneck of C / r units, r = 16 (Sec. 6.1)
    y = relu(x + s * F(x))                  # scale the branch, then the unchanged shortcut

W1 and W2 are 1x1 convolutions with biases named ``se.fc1`` / ``se.fc2``, timm's names, so that a unit's
state dict reads ``layer1.0.se.fc1.weight`` as timm's do: ``seresnet18/34/50/101/152`` have timm's
parameter counts (11,779,624 / 21,960,416 / 28,088,024 / 49,326,872 / 66,821,848) and load timm's state
dicts with ``strict=True`` and identical outputs (tested against timm 1.0.31). The SE module sits at the end of ``unit.residual``: a hook on the branch
sees the recalibrated F(x), and every analysis and control of :class:`~reslab.models.base.ResidualUnit`
(lesion, gain, stochastic depth, zero-init of the last BN) works unchanged.

Deviation, where Hu et al. leave it open: the reduced width is ``C / r`` rounded to a multiple of
``divisor`` (timm's ``make_divisible``; at least ``divisor``). For the ImageNet bottleneck networks
(C = 256 ... 2048) that is exactly C / 16; for the basic-unit ImageNet networks it is timm's rounding
(64 channels -> 8, not 4). The CIFAR SE-ResNets use ``divisor=1`` (C // 16: 1, 2 and 4 units).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reslab.models.blocks import BasicUnit, Bottleneck
from reslab.models.registry import register_model
from reslab.models.zoo import ResNet, cifar_resnet, imagenet_resnet


def reduced_width(channels: int, reduction: int = 16, divisor: int = 8) -> int:
    """``channels / reduction`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``)."""
    v = channels / reduction
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean_hw(x))))) (Hu et al. 2018, Eq. 2-4); fc1/fc2 are 1x1 convs with bias."""

    def __init__(self, channels: int, reduction: int = 16, divisor: int = 8) -> None:
        super().__init__()
        hidden = reduced_width(channels, reduction, divisor)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))

    def count_macs(self) -> int:
        """Multiply-adds of the two 1x1 convolutions on the pooled 1x1 map (the pooling and scaling are
        not multiply-adds of a layer, as BN is not)."""
        return 2 * self.fc1.in_channels * self.fc1.out_channels


class SEBasic(BasicUnit):
    """:class:`~reslab.models.blocks.BasicUnit` with an SE module after ``bn2`` (Hu et al. 2018, Fig. 3)."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "A", divisor: int = 8
    ) -> None:
        super().__init__(inplanes, planes, stride, shortcut)
        self.residual.add_module("se", SqueezeExcite(planes, 16, divisor))


class SEBottleneck(Bottleneck):
    """:class:`~reslab.models.blocks.Bottleneck` with an SE module after ``bn3`` (Hu et al. 2018, Fig. 3;
    Table 14 lists SE-ResNet-50's stages). Stride in the 3x3 as torchvision and timm (``stride_in_1x1``
    for the paper's Caffe models)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "B", **kw: Any) -> None:
        super().__init__(inplanes, planes, stride, shortcut, **kw)
        self.residual.add_module("se", SqueezeExcite(planes * self.expansion, 16, 8))


# ------------------------------------------------------------------------------------ registrations

_HU = "Hu et al. 2018, Squeeze-and-Excitation Networks"
_IN = {"input_size": (3, 224, 224), "num_classes": 1000}
_TOP1 = " top-1 (ImageNet val, 1-crop 224)"
_CIFAR = {"divisor": 1}


@register_model(family="seresnet-imagenet", depth=18, paper=f"{_HU}; timm's seresnet18", **_IN)
def seresnet18(**kw: Any) -> ResNet:
    """SE-ResNet-18: ResNet-18 with an SE module in every basic unit (timm's seresnet18)."""
    return imagenet_resnet(SEBasic, (2, 2, 2, 2), **kw)


@register_model(family="seresnet-imagenet", depth=34, paper=f"{_HU}; timm's seresnet34", **_IN)
def seresnet34(**kw: Any) -> ResNet:
    """SE-ResNet-34: ResNet-34 with an SE module in every basic unit (timm's seresnet34)."""
    return imagenet_resnet(SEBasic, (3, 4, 6, 3), **kw)


@register_model(
    family="seresnet-imagenet", depth=50, paper=f"{_HU}, Table 2", paper_error="23.29" + _TOP1, **_IN
)
def seresnet50(**kw: Any) -> ResNet:
    """SE-ResNet-50: bottlenecks (3, 4, 6, 3) with SE modules, r = 16 (28.1M parameters; timm's seresnet50)."""
    return imagenet_resnet(SEBottleneck, (3, 4, 6, 3), **kw)


@register_model(
    family="seresnet-imagenet", depth=101, paper=f"{_HU}, Table 2", paper_error="22.38" + _TOP1, **_IN
)
def seresnet101(**kw: Any) -> ResNet:
    """SE-ResNet-101: bottlenecks (3, 4, 23, 3) with SE modules, r = 16."""
    return imagenet_resnet(SEBottleneck, (3, 4, 23, 3), **kw)


@register_model(
    family="seresnet-imagenet", depth=152, paper=f"{_HU}, Table 2", paper_error="21.57" + _TOP1, **_IN
)
def seresnet152(**kw: Any) -> ResNet:
    """SE-ResNet-152: bottlenecks (3, 8, 36, 3) with SE modules, r = 16."""
    return imagenet_resnet(SEBottleneck, (3, 8, 36, 3), **kw)


_HU_CIFAR = f"{_HU}, Sec. 6.1 (SE on the CIFAR ResNet of He et al. 2016, Sec. 4.2; no paper number for it)"


@register_model(family="seresnet-cifar", depth=20, paper=_HU_CIFAR)
def seresnet20(**kw: Any) -> ResNet:
    """SE-ResNet-20: ResNet-20 (option A) with an SE module (r = 16) in every unit."""
    return cifar_resnet(SEBasic, 20, unit_kwargs=_CIFAR, **kw)


@register_model(family="seresnet-cifar", depth=56, paper=_HU_CIFAR)
def seresnet56(**kw: Any) -> ResNet:
    """SE-ResNet-56: ResNet-56 (option A) with an SE module (r = 16) in every unit."""
    return cifar_resnet(SEBasic, 56, unit_kwargs=_CIFAR, **kw)


@register_model(family="seresnet-cifar", depth=110, paper=_HU_CIFAR)
def seresnet110(**kw: Any) -> ResNet:
    """SE-ResNet-110: ResNet-110 (option A) with an SE module (r = 16) in every unit."""
    return cifar_resnet(SEBasic, 110, unit_kwargs=_CIFAR, **kw)
