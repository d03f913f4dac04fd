"""3D ResNets for video: clips (N, C, T, H, W) -> logits, built from the same residual unit.

Two families, each with the state-dict names of the code its users load weights from:

- torchvision's video ResNets (Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action
  Recognition"): ``r3d_18`` (3x3x3 convolutions everywhere), ``mc3_18`` (mixed convolutions: 3D in the
  first stage, 2D (1x3x3) in the others, Sec. 3.2 "MC3") and ``r2plus1d_18`` (every 3x3x3 factorized into
  a 1x3x3 spatial and a 3x1x1 temporal convolution with BN-ReLU between, Sec. 3.5). Names as torchvision's
  ``VideoResNet``: ``stem.0/1``, ``layerN.i.conv1.0/1``, ``conv2.0/1``, ``downsample.0/1``, ``fc``, so
  torchvision's state dicts load with ``strict=True``.
- Hara et al.'s 3D ResNets (Hara, Kataoka & Satoh 2018, "Can Spatiotemporal 3D CNNs Retrace the History of
  2D CNNs and ImageNet?", Sec. 3.2, Table 1): He et al. 2016's ResNets with every kernel 3x3x3, a 7x7x7
  stem with spatial stride 2 and a 3x3x3 max pool; shortcut type A (ResNet-18/34) or B (ResNet-50), which
  are reslab's options A/B (C also works). Unit names as the authors' code (``conv1, bn1, conv2, bn2``).

Every unit is a :class:`~reslab.models.base.ResidualUnit` (``unit.residual``, ``unit.shortcut``) so lesion
studies, gradient profiles and stochastic depth work on these networks unchanged.

Deviations, all torchvision's (kept so its weights load): the (2+1)D mid-channels of *both* convolutions of
a unit are computed from the unit's (input, output) widths, M = floor(t d^2 N_in N_out / (d^2 N_in + t
N_out)) with t = d = 3 (Tran et al. compute it per convolution; the second conv of a widening unit gets 230
instead of 288 channels); the (2+1)D stem has 45 mid-channels; the classifier is initialized
N(0, 0.01). For Hara's networks the stem's conv and BN are ``stem.0``/``stem.1`` (the authors' ``conv1``/
``bn1``: their checkpoints need those two keys renamed) and the classifier init is torchvision's, not
PyTorch's default.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.models.base import ClassifierHead, ResidualUnit, set_drop_path, stage_units
from reslab.models.blocks import make_shortcut, torchvision_names
from reslab.models.registry import register_model

CONVS = ("3d", "2d", "2plus1d")  # 3x3x3; 1x3x3 ("no temporal", MC3); 1x3x3 then 3x1x1 ((2+1)D)


def _seq(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def mid_channels(cin: int, cout: int, t: int = 3, d: int = 3) -> int:
    """Tran et al. 2018, Sec. 3.5: the (2+1)D block with as many parameters as a t x d x d 3D convolution."""
    return (t * d * d * cin * cout) // (d * d * cin + t * cout)


def spatiotemporal_conv(kind: str, cin: int, cout: int, stride: int = 1, mid: int = 0) -> nn.Module:
    """A 3x3x3 convolution (``"3d"``), its 2D form 1x3x3 (``"2d"``, stride only in space) or its (2+1)D
    factorization 1x3x3 -> BN -> ReLU -> 3x1x1 with ``mid`` channels between (``"2plus1d"``)."""
    if kind == "3d":
        return nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
    if kind == "2d":
        return nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
    if kind == "2plus1d":
        return nn.Sequential(
            nn.Conv3d(cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(),
            nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )
    raise ConfigError(f"conv must be one of {', '.join(CONVS)}, got {kind!r}")


def _stride(kind: str, stride: int) -> tuple[int, int, int]:
    return (1, stride, stride) if kind == "2d" else (stride, stride, stride)


# ------------------------------------------------------------------------------------------------ units


class VideoBasicUnit(ResidualUnit):
    """Two spatiotemporal convolutions with BN, ReLU after the addition (Tran et al. 2018, Fig. 1):
    torchvision's video ``BasicBlock`` with its names ``conv1.0/1`` and ``conv2.0/1`` and ``downsample``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "B", conv: str = "3d"):
        super().__init__()
        mid = mid_channels(inplanes, planes)  # torchvision: the same M for both convs (module docstring)
        self.residual = _seq(
            conv1=nn.Sequential(
                spatiotemporal_conv(conv, inplanes, planes, stride, mid), nn.BatchNorm3d(planes), nn.ReLU()
            ),
            conv2=nn.Sequential(spatiotemporal_conv(conv, planes, planes, 1, mid), nn.BatchNorm3d(planes)),
        )
        self.shortcut = make_shortcut(shortcut, inplanes, planes, _stride(conv, stride), dims=3)
        torchvision_names(self)


class BasicUnit3d(ResidualUnit):
    """He et al. 2016's basic unit with 3x3x3 kernels (Hara et al. 2018, Sec. 3.2, Fig. 1 left): ``conv1,
    bn1, conv2, bn2`` and ``downsample``, the authors' names; stride in time and space."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.residual = _seq(
            conv1=nn.Conv3d(inplanes, planes, 3, stride=stride, padding=1, bias=False),
            bn1=nn.BatchNorm3d(planes),
            relu=nn.ReLU(),
            conv2=nn.Conv3d(planes, planes, 3, padding=1, bias=False),
            bn2=nn.BatchNorm3d(planes),
        )
        self.shortcut = make_shortcut(shortcut, inplanes, planes, stride, dims=3)
        torchvision_names(self)


class Bottleneck3d(ResidualUnit):
    """He et al. 2016's bottleneck with a 3x3x3 middle kernel (Hara et al. 2018, Fig. 1 right): 1x1x1
    reduce, 3x3x3 (with the stride, as Hara et al.'s code), 1x1x1 expand x4; ``conv1..3``, ``bn1..3``."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        out = planes * self.expansion
        self.residual = _seq(
            conv1=nn.Conv3d(inplanes, planes, 1, bias=False),
            bn1=nn.BatchNorm3d(planes),
            relu1=nn.ReLU(),
            conv2=nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False),
            bn2=nn.BatchNorm3d(planes),
            relu2=nn.ReLU(),
            conv3=nn.Conv3d(planes, out, 1, bias=False),
            bn3=nn.BatchNorm3d(out),
        )
        self.shortcut = make_shortcut(shortcut, inplanes, out, stride, dims=3)
        torchvision_names(self)


# ---------------------------------------------------------------------------------------------- network


STEMS = ("r3d", "r2plus1d", "2d", "hara")


def video_stem(kind: str, in_chans: int, width: int = 64) -> nn.Sequential:
    """The stems: ``"r3d"`` conv 3x7x7 stride (1, 2, 2) (torchvision's ``BasicStem``); ``"r2plus1d"`` the
    same factorized 1x7x7 (45 channels at width 64) then 3x1x1 (``R2Plus1dStem``); ``"2d"`` conv 1x7x7
    (per frame); ``"hara"`` conv 7x7x7 stride (1, 2, 2) and max pool 3x3x3 stride 2 (Hara et al. 2018,
    Table 1). Each conv is followed by BN-ReLU."""
    if kind in ("r3d", "2d"):
        t = 3 if kind == "r3d" else 1
        conv = [nn.Conv3d(in_chans, width, (t, 7, 7), stride=(1, 2, 2), padding=(t // 2, 3, 3), bias=False)]
        return nn.Sequential(*conv, nn.BatchNorm3d(width), nn.ReLU())
    if kind == "r2plus1d":
        mid = 45 * width // 64
        return nn.Sequential(
            nn.Conv3d(in_chans, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(),
            nn.Conv3d(mid, width, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(),
        )
    if kind == "hara":
        conv = nn.Conv3d(in_chans, width, 7, stride=(1, 2, 2), padding=3, bias=False)
        return nn.Sequential(conv, nn.BatchNorm3d(width), nn.ReLU(), nn.MaxPool3d(3, stride=2, padding=1))
    raise ConfigError(f"stem must be one of {', '.join(STEMS)}, got {kind!r}")


class VideoResNet(ClassifierHead, nn.Module):
    """``stem``, stages ``layer1..4`` of residual units (``width`` x (1, 2, 4, 8) x expansion channels, width
    64 in the papers; the first
    unit of stages 2-4 halves time and space, or space only for ``"2d"`` convolutions), global average
    pooling over (T, H, W) and ``fc``. ``convs`` names the convolution of each stage's units
    (:data:`CONVS`; ``unit`` must be :class:`VideoBasicUnit` then). Input: clips (N, C, T, H, W).
    """

    def __init__(
        self,
        unit: type[ResidualUnit],
        layers: tuple[int, ...],
        *,
        stem: str,
        convs: tuple[str, ...] | None = None,
        shortcut: str = "B",
        width: int = 64,
        num_classes: int = 400,
        in_chans: int = 3,
        zero_init_residual: bool = False,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if width < 1:
            raise ConfigError(f"width must be positive, got {width}")
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}
        self.num_classes, self.in_chans = num_classes, in_chans
        self.stem = video_stem(stem, in_chans, width)
        self.stem_names: tuple[str, ...] = ("stem",)
        inplanes = width
        for i, (n, planes) in enumerate(zip(layers, (width, 2 * width, 4 * width, 8 * width))):
            extra = {"conv": convs[i]} if convs else {}
            stage = []
            for j in range(n):
                stage.append(unit(inplanes, planes, 2 if i > 0 and j == 0 else 1, shortcut, **extra))
                inplanes = planes * unit.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.stage_names = tuple(f"layer{i + 1}" for i in range(len(layers)))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.num_features = inplanes
        self.fc = nn.Linear(inplanes, num_classes)
        self._init_weights(zero_init_residual)
        set_drop_path(self.blocks, drop_path_rate)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in () if self.fc.weight.is_meta else self.modules():  # torchvision's VideoResNet init
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for b in self.blocks:
                b.zero_init_last()

    @property
    def blocks(self) -> list[ResidualUnit]:
        """The residual units in forward order."""
        return stage_units(self)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output (N, C, T, H, W) of every stage."""
        x = self.stem(x)
        outs = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outs.append(x)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ConfigError(f"video models take clips (N, C, T, H, W), got shape {tuple(x.shape)}")
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------------ the models

_TRAN = "Tran et al. 2018, A Closer Look at Spatiotemporal Convolutions for Action Recognition"
_HARA = "Hara et al. 2018, Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?, Table 1"
_K400 = {"input_size": (3, 16, 112, 112), "num_classes": 400, "task": "video-classification"}


@register_model(family="video-resnet", depth=18, paper=f"{_TRAN}, Sec. 3.1 (R3D)", **_K400)
def r3d_18(**kw: Any) -> VideoResNet:
    """R3D-18: 3x3x3 convolutions in every unit (2, 2, 2, 2); torchvision's r3d_18."""
    return VideoResNet(VideoBasicUnit, (2, 2, 2, 2), stem="r3d", convs=("3d",) * 4, **kw)


@register_model(family="video-resnet", depth=18, paper=f"{_TRAN}, Sec. 3.2 (MC3)", **_K400)
def mc3_18(**kw: Any) -> VideoResNet:
    """MC3-18: 3D convolutions in the first stage, 2D (1x3x3) in the others; torchvision's mc3_18."""
    return VideoResNet(VideoBasicUnit, (2, 2, 2, 2), stem="r3d", convs=("3d",) + ("2d",) * 3, **kw)


@register_model(family="video-resnet", depth=18, paper=f"{_TRAN}, Sec. 3.5 (R(2+1)D)", **_K400)
def r2plus1d_18(**kw: Any) -> VideoResNet:
    """R(2+1)D-18: every 3x3x3 factorized into 1x3x3 and 3x1x1 with BN-ReLU between; torchvision's."""
    return VideoResNet(VideoBasicUnit, (2, 2, 2, 2), stem="r2plus1d", convs=("2plus1d",) * 4, **kw)


@register_model(family="resnet-3d", depth=18, paper=_HARA, **_K400)
def resnet3d_18(shortcut: str = "A", **kw: Any) -> VideoResNet:
    """3D ResNet-18: basic 3x3x3 units (2, 2, 2, 2), type-A shortcuts (Hara et al. 2018)."""
    return VideoResNet(BasicUnit3d, (2, 2, 2, 2), stem="hara", shortcut=shortcut, **kw)


@register_model(family="resnet-3d", depth=34, paper=_HARA, **_K400)
def resnet3d_34(shortcut: str = "A", **kw: Any) -> VideoResNet:
    """3D ResNet-34: basic 3x3x3 units (3, 4, 6, 3), type-A shortcuts (Hara et al. 2018)."""
    return VideoResNet(BasicUnit3d, (3, 4, 6, 3), stem="hara", shortcut=shortcut, **kw)


@register_model(family="resnet-3d", depth=50, paper=_HARA, **_K400)
def resnet3d_50(shortcut: str = "B", **kw: Any) -> VideoResNet:
    """3D ResNet-50: 3x3x3 bottlenecks (3, 4, 6, 3), type-B shortcuts (Hara et al. 2018)."""
    return VideoResNet(Bottleneck3d, (3, 4, 6, 3), stem="hara", shortcut=shortcut, **kw)


# Smaller networks of the same families, for the CPU-scale comparisons on Moving Fashion-MNIST.
_LAYERS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
_CONVS = {"3d": ("3d",) * 4, "mc3": ("3d",) + ("2d",) * 3, "2plus1d": ("2plus1d",) * 4, "2d": ("2d",) * 4}
_STEM = {"3d": "r3d", "mc3": "r3d", "2plus1d": "r2plus1d", "2d": "2d"}


@register_model(family="video-resnet", depth=18, paper=_TRAN, name="video_resnet", **_K400)
def video_resnet(depth: int = 18, conv: str = "3d", **kw: Any) -> VideoResNet:
    """Video ResNet of depth 10, 18 or 34 with ``conv`` "3d" (R3D), "mc3", "2plus1d" (R(2+1)D) or "2d" (a
    2D ResNet applied to every frame, its features averaged over time) and any ``width`` (default 64)."""
    if depth not in _LAYERS or conv not in _CONVS:
        raise ConfigError(
            f"depth must be one of {list(_LAYERS)} and conv one of {list(_CONVS)}, got {depth}, {conv!r}"
        )
    return VideoResNet(VideoBasicUnit, _LAYERS[depth], stem=_STEM[conv], convs=_CONVS[conv], **kw)
