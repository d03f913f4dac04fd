"""insightface's IR-ResNets, the ArcFace backbones, and their plain twins.

Deng et al. 2019, *ArcFace: Additive Angular Margin Loss for Deep Face Recognition* (CVPR; arXiv
1801.07698): the "improved residual unit" BN-conv-BN-PReLU-conv-BN and the BN-dropout-FC-BN embedding
output; the code implemented is ``recognition/arcface_torch/backbones/iresnet.py`` of
deepinsight/insightface (read at commit d9cb10e).

What the reference builds, and this module with it, for 112 x 112 aligned faces::

    stem:   conv3x3(3 -> 64, stride 1) - BN - PReLU                       (conv1, bn1, prelu)
    unit:   BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN  (+ x)       (bn1, conv1, bn2, prelu, conv2, bn3)
            shortcut: identity, or conv1x1(stride) - BN where the shape changes   (downsample.0/1)
    stages: 64, 128, 256, 512 channels, each starting with a stride-2 unit (112 -> 56 -> 28 -> 14 -> 7)
            layers (2, 2, 2, 2) / (3, 4, 6, 3) / (3, 4, 14, 3) / (3, 13, 30, 3) for IR-18/34/50/100
    head:   BN2d - dropout - flatten - fc(512 * 7 * 7 -> 512) - BN1d   (bn2, dropout, fc, features)

Nothing follows the addition (no ReLU: ``unit.post_act`` is False); the stride sits in the second 3x3 and
the projection shortcut takes ``x`` itself, as in the reference. State-dict names are the reference's
(``layer2.0.bn1.weight``, ``layer2.0.downsample.0.weight``, ``features.running_mean``), so an
arcface_torch ``backbone.pth`` loads with ``strict=True`` (``create_model("iresnet50",
pretrained="backbone.pth")``); the final BN1d's gamma is fixed at 1 and not trained
(``features.weight.requires_grad = False``), as there. Initialization is the reference's: every conv
N(0, 0.1), BN gamma 1 / beta 0, PReLU slopes 0.25, the linear layers PyTorch's default.

The model's output is the **embedding** (N, ``num_features``; 512 by default), *before* any L2
normalization (a margin head or a cosine similarity normalizes it): ``forward_features(x)`` is the last
stage's map (N, 512, 7, 7), ``forward_head(x, pre_logits=True)`` the embedding, ``forward_head(x)`` the
embedding too, or with ``num_classes=K`` a K-way linear classifier on it (``logits``, facenet's name;
arcface_torch has none: its margin heads live outside the backbone, see :mod:`reslab.tasks`).

Deviations and additions, named: ``input_size`` (default 112) sizes ``fc`` for another input (the
reference's ``fc_scale = 7 * 7`` is ``input_size=112``; ``input_size=64`` gives 4 x 4); ``in_chans``
(the reference takes 3); ``num_classes`` (the optional ``logits`` layer); ``drop_path_rate`` (stochastic
depth, off by default); dropout is not in place (the same values). The reference's ``fp16`` flag (autocast
for the convolutions, fc in fp32) is left to the training loop's ``amp``. ``zero_init_residual`` zeroes
``bn2``'s gamma, as the reference does (then F(x) = 0), not the last BN.

Plain twins (``iresnet18_plain`` ...): the same layers without the shortcut term (He et al. 2016,
Sec. 4.1 "Plain Networks"): ``y = F(x)``; they have no projections (4 conv1x1 + BN fewer), and the
parameter-free option-A path is used only when a unit is deleted (a lesion).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.models.base import ClassifierHead, ResidualUnit, set_drop_path, stage_units
from reslab.models.blocks import PlainTwin, _seq, conv3x3, make_shortcut, torchvision_names
from reslab.models.registry import register_model
from reslab.models.zoo import _conv_macs

WIDTHS = (64, 128, 256, 512)


class IRUnit(ResidualUnit):
    """arcface_torch's ``IBasicBlock``: BN-conv3x3-BN-PReLU-conv3x3(stride)-BN, plus ``x`` (or its
    conv1x1-BN projection where the shape changes: ``shortcut="B"``, the reference's rule); nothing after
    the addition."""

    expansion = 1
    post_act = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        self.residual = _seq(
            bn1=nn.BatchNorm2d(inplanes, eps=1e-5),
            conv1=conv3x3(inplanes, planes),
            bn2=nn.BatchNorm2d(planes, eps=1e-5),
            prelu=nn.PReLU(planes),
            conv2=conv3x3(planes, planes, stride),
            bn3=nn.BatchNorm2d(planes, eps=1e-5),
        )
        self.shortcut = make_shortcut(shortcut, inplanes, planes, stride)
        torchvision_names(self)

    def zero_init_last(self) -> None:
        """The reference's ``zero_init_residual``: ``bn2``'s gamma = 0, so PReLU, conv2 and bn3 see zeros
        and F(x) = 0 (bn3's beta starts at 0)."""
        nn.init.zeros_(self.residual.bn2.weight)


class IRPlainUnit(PlainTwin, IRUnit):
    """The plain twin of :class:`IRUnit`: the same layers, ``y = F(x)`` (:class:`~reslab.models.blocks.PlainTwin`)."""


def _halved(size: tuple[int, int]) -> tuple[int, int]:
    """A 3x3, stride-2, padding-1 convolution's output size."""
    return ((size[0] - 1) // 2 + 1, (size[1] - 1) // 2 + 1)


class IResNet(ClassifierHead, nn.Module):
    """arcface_torch's ``IResNet`` (module docstring): stem, ``layer1..4``, the BN-dropout-fc-BN head."""

    classifier_attr = "logits"

    def __init__(
        self,
        unit: type[IRUnit],
        layers: tuple[int, ...],
        *,
        num_classes: int = 0,
        in_chans: int = 3,
        num_features: int = 512,
        dropout: float = 0.0,
        input_size: int | tuple[int, int] = 112,
        shortcut: str = "B",
        zero_init_residual: bool = False,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if len(size) != 2 or min(size) < 1 or num_features < 1 or not 0.0 <= dropout < 1.0:
            raise ConfigError(
                f"input_size must be a positive int or (H, W), num_features positive, dropout in [0, 1); "
                f"got {input_size}, {num_features}, {dropout}"
            )
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}
        self.num_classes, self.in_chans, self.num_features = num_classes, in_chans, num_features
        self.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.stem_names = ("conv1", "bn1", "prelu")
        inplanes, final = 64, size
        for i, (n, planes) in enumerate(zip(layers, WIDTHS)):
            stage = [
                unit(inplanes if j == 0 else planes, planes, 2 if j == 0 else 1, shortcut) for j in range(n)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            inplanes, final = planes, _halved(final)
        self.stage_names = tuple(f"layer{i + 1}" for i in range(len(layers)))
        self.final_size = final
        self.bn2 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(inplanes * final[0] * final[1], num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        self.features.weight.requires_grad = False  # the reference's: gamma fixed at 1
        self.logits = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_residual)
        if drop_path_rate and not all(b.has_shortcut for b in self.blocks):
            raise ConfigError("drop_path_rate needs shortcuts: a plain network would drop its whole signal")
        set_drop_path(self.blocks, drop_path_rate)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in () if self.fc.weight.is_meta else self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if not self.fc.weight.is_meta:
            nn.init.ones_(self.features.weight)
        if zero_init_residual:
            for b in self.blocks:
                b.zero_init_last()

    @property
    def blocks(self) -> list[ResidualUnit]:
        """The residual units in forward order."""
        return stage_units(self)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn1(self.conv1(x)))

    def forward_stages(self, x: torch.Tensor, *, stem: bool = False) -> list[torch.Tensor]:
        """The output of every stage (1/2, 1/4, 1/8, 1/16 of the input); with ``stem``, first the stem's
        (full resolution: the IR stem does not downsample)."""
        x = self._stem(x)
        outs = [x] if stem else []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outs.append(x)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map, (N, 512, 7, 7) at 112 x 112."""
        x = self._stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """BN2d - dropout - flatten - fc - BN1d: the embedding (``pre_logits``, or without a classifier);
        else the classifier's logits on it."""
        if tuple(x.shape[-2:]) != self.final_size:
            raise ConfigError(
                f"{self.model_name or 'this IR-ResNet'} was built for a {self.final_size[0]}x"
                f"{self.final_size[1]} final map (input_size={self.model_kwargs.get('input_size', 112)}); "
                f"got {tuple(x.shape[-2:])}: resize the faces or build with input_size=H"
            )
        x = self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))
        return x if pre_logits else self.logits(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def count_macs(self, input_size: tuple[int, int]) -> int:
        """Multiply-adds of one image: convolutions (shortcuts included), ``fc`` and ``logits``."""
        size, macs = _conv_macs(self.conv1, tuple(input_size))
        for unit in self.blocks:
            macs += sum(_conv_macs(m, size)[1] for m in unit.shortcut.modules() if isinstance(m, nn.Conv2d))
            for m in unit.residual.children():
                if isinstance(m, nn.Conv2d):
                    size, n = _conv_macs(m, size)
                    macs += n
        macs += self.fc.in_features * self.fc.out_features
        if isinstance(self.logits, nn.Linear):
            macs += self.logits.in_features * self.logits.out_features
        return macs


# ------------------------------------------------------------------------------------ registrations

_DENG = "Deng et al. 2019, ArcFace (Sec. 3.2); insightface's arcface_torch backbones/iresnet.py"
_FACE = {"input_size": (3, 112, 112), "num_classes": 0, "task": "face-embedding"}
_PLAIN = f"{_DENG}, without shortcuts (He et al. 2016, Sec. 4.1)"


@register_model(family="iresnet", depth=18, paper=_DENG, **_FACE)
def iresnet18(**kw: Any) -> IResNet:
    """IR-ResNet-18: IR units (2, 2, 2, 2), 512-d embedding; arcface_torch's iresnet18."""
    return IResNet(IRUnit, (2, 2, 2, 2), **kw)


@register_model(family="iresnet", depth=34, paper=_DENG, **_FACE)
def iresnet34(**kw: Any) -> IResNet:
    """IR-ResNet-34: IR units (3, 4, 6, 3), 512-d embedding; arcface_torch's iresnet34."""
    return IResNet(IRUnit, (3, 4, 6, 3), **kw)


@register_model(family="iresnet", depth=50, paper=_DENG, **_FACE)
def iresnet50(**kw: Any) -> IResNet:
    """IR-ResNet-50: IR units (3, 4, 14, 3), 512-d embedding; arcface_torch's iresnet50."""
    return IResNet(IRUnit, (3, 4, 14, 3), **kw)


@register_model(family="iresnet", depth=100, paper=_DENG, **_FACE)
def iresnet100(**kw: Any) -> IResNet:
    """IR-ResNet-100: IR units (3, 13, 30, 3), 512-d embedding; arcface_torch's iresnet100."""
    return IResNet(IRUnit, (3, 13, 30, 3), **kw)


@register_model(family="plain-iresnet", depth=18, paper=_PLAIN, **_FACE)
def iresnet18_plain(**kw: Any) -> IResNet:
    """Plain twin of IR-ResNet-18: the same layers without shortcuts or projections."""
    return IResNet(IRPlainUnit, (2, 2, 2, 2), shortcut="A", **kw)


@register_model(family="plain-iresnet", depth=34, paper=_PLAIN, **_FACE)
def iresnet34_plain(**kw: Any) -> IResNet:
    """Plain twin of IR-ResNet-34: the same layers without shortcuts or projections."""
    return IResNet(IRPlainUnit, (3, 4, 6, 3), shortcut="A", **kw)


@register_model(family="plain-iresnet", depth=50, paper=_PLAIN, **_FACE)
def iresnet50_plain(**kw: Any) -> IResNet:
    """Plain twin of IR-ResNet-50: the same layers without shortcuts or projections."""
    return IResNet(IRPlainUnit, (3, 4, 14, 3), shortcut="A", **kw)


@register_model(family="plain-iresnet", depth=100, paper=_PLAIN, **_FACE)
def iresnet100_plain(**kw: Any) -> IResNet:
    """Plain twin of IR-ResNet-100: the same layers without shortcuts or projections."""
    return IResNet(IRPlainUnit, (3, 13, 30, 3), shortcut="A", **kw)
