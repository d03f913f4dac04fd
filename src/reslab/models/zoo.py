"""The model zoo: one network class, :class:`ResNet`, and a three-line declaration per registered name.

Families (``reslab models`` lists them with parameters, multiply-adds and the paper's error):

- CIFAR ResNets, 6n+2 layers, 16/32/64 channels, option-A shortcuts (He et al. 2016, Sec. 4.2, Table 6),
  their plain twins (Sec. 4.1/4.2, Fig. 6) and highway twins (Srivastava et al. 2015; He et al. compare
  with highway networks in Table 6);
- pre-activation ResNets (He et al. 2016b), wide ResNets (Zagoruyko & Komodakis 2016) and ResNeXt-29
  (Xie et al. 2017, Sec. 5.3) on CIFAR;
- ImageNet ResNets (He et al. 2016, Table 1), plain-18/34 (Table 2), ResNeXt and wide ResNets with
  torchvision's layer names, so torchvision's state dicts load with ``strict=True``.

Initialization follows He et al. 2015 ("MSRA", Sec. 2.2) as the paper and torchvision do: convolutions
normal with std sqrt(2 / fan_out), BN gamma 1 and beta 0, the classifier PyTorch's default.

Length: the module is over 500 lines on purpose: most of it is the table of declarations (one
paper-cited, three-line builder per name), which reads best as one list next to the class they build.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.models.base import ClassifierHead, ResidualUnit, set_drop_path, stage_units
from reslab.models.blocks import (
    BasicUnit,
    Bottleneck,
    HighwayUnit,
    PlainUnit,
    PreActBasic,
    PreActBottleneck,
    conv3x3,
)
from reslab.models.registry import register_model


class ResNet(ClassifierHead, nn.Module):
    """A stem, stages ``layer1..layerN`` of residual units, global average pooling and ``fc``.

    ``stem="cifar"``: conv3x3 (+ BN-ReLU) at full resolution (He et al. 2016, Sec. 4.2);
    ``stem="imagenet"``: conv7x7/2, BN-ReLU, maxpool 3x3/2 (Table 1). Pre-activation units
    (``unit.post_act == False``) get no BN-ReLU in the stem and a final ``final_bn``-ReLU before pooling
    (He et al. 2016b, Sec. 3.2 / Fig. 4e). The first unit of every stage but the first halves the
    resolution; widths are ``planes[i] * unit.expansion``.
    """

    def __init__(
        self,
        unit: type[ResidualUnit],
        layers: tuple[int, ...],
        planes: tuple[int, ...],
        *,
        stem: str = "cifar",
        stem_width: int = 16,
        shortcut: str = "A",
        unit_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        in_chans: int = 3,
        zero_init_residual: bool = False,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ConfigError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}
        self.num_classes, self.in_chans = num_classes, in_chans
        self._preact = not unit.post_act
        self._maxpool = stem == "imagenet"
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(in_chans, stem_width)
        self.stem_names: tuple[str, ...] = ("conv1",) if self._preact else ("conv1", "bn1")
        if not self._preact:
            self.bn1 = nn.BatchNorm2d(stem_width)
            self.relu = nn.ReLU()
        if self._maxpool:
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem_width
        for i, (n, p) in enumerate(zip(layers, planes)):
            stage = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                stage.append(unit(inplanes, p, stride, shortcut, **(unit_kwargs or {})))
                inplanes = p * unit.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.stage_names = tuple(f"layer{i + 1}" for i in range(len(layers)))
        if self._preact:
            self.final_bn = nn.BatchNorm2d(inplanes)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = inplanes
        self.fc = nn.Linear(inplanes, num_classes)
        self._init_weights(zero_init_residual)
        if drop_path_rate and not all(b.has_shortcut for b in self.blocks):
            raise ConfigError("drop_path_rate needs shortcuts: a plain network would drop its whole signal")
        set_drop_path(self.blocks, drop_path_rate)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # On the meta device (counting, config checks) there are no values to set; it saves seconds.
        for m in () if self.fc.weight.is_meta else self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for b in self.blocks:
                b.zero_init_last()

    @property
    def blocks(self) -> list[ResidualUnit]:
        """The residual units in forward order (a property: not a second registration of the modules)."""
        return stage_units(self)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 (+ BN-ReLU): the stem's feature map before its max-pool (timm's ``act1`` feature)."""
        x = self.conv1(x)
        return x if self._preact else self.relu(self.bn1(x))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(x) if self._maxpool else x

    def forward_stages(self, x: torch.Tensor, *, stem: bool = False) -> list[torch.Tensor]:
        """The output of every stage (resolution 1, 1/2, 1/4, ... of the stem's), e.g. for a detector;
        with ``stem``, first the stem's output before its max-pool (timm's feature index 0)."""
        x = self._stem(x)
        outs = [x] if stem else []
        x = self._pool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outs.append(x)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling (after the final BN-ReLU for pre-activation networks)."""
        x = self._pool(self._stem(x))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return torch.relu(self.final_bn(x)) if self._preact else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def count_macs(self, input_size: tuple[int, int]) -> int:
        """Multiply-adds for one ``input_size`` (H, W) image, from the layer shapes alone: convolutions and
        ``fc``, as the paper counts and as ``FlopCounterMode`` does (the tests check that both agree). It
        takes milliseconds where tracing ResNet-1202 on the meta device takes seconds."""
        size, macs = _conv_macs(self.conv1, tuple(input_size))
        if self._maxpool:
            size = tuple((n - 1) // 2 + 1 for n in size)  # 3x3, stride 2, padding 1
        for unit in self.blocks:
            for path in (unit.shortcut, getattr(unit, "gate", None)):
                for m in path.modules() if path is not None else ():
                    if isinstance(m, nn.Conv2d):
                        macs += _conv_macs(m, size)[1]
            for m in unit.residual.children():
                if isinstance(m, nn.Conv2d):
                    size, n = _conv_macs(m, size)
                    macs += n
                elif hasattr(m, "count_macs"):  # a shape-preserving part with its own count (SE)
                    macs += m.count_macs()
        if isinstance(self.fc, nn.Linear):
            macs += self.fc.in_features * self.fc.out_features
        return macs


def _conv_macs(conv: nn.Conv2d, size: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """(output H x W, multiply-adds) of ``conv`` on an input of spatial ``size``."""
    geometry = zip(size, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in geometry)  # type: ignore[operator]
    kh, kw = conv.kernel_size
    return out, out[0] * out[1] * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw


# ---------------------------------------------------------------------------------- family builders


def _per_stage(depth: int, per_block: int, extra: int, rule: str) -> int:
    n, rest = divmod(depth - extra, per_block)
    if rest or n < 1:
        raise ConfigError(f"depth must be {rule} with n >= 1, got {depth}")
    return n


def cifar_resnet(unit: type[ResidualUnit], depth: int, *, shortcut: str = "A", **kw: Any) -> ResNet:
    """6n+2 layers: conv3x3, 3 stages of n two-conv units (16, 32, 64 channels), fc (He et al. 2016, Sec. 4.2)."""
    n = _per_stage(depth, 6, 2, "6n+2 (20, 32, 44, 56, 110, 1202, ...)")
    return ResNet(unit, (n, n, n), (16, 32, 64), stem_width=16, shortcut=shortcut, **kw)


def preact_resnet(depth: int, bottleneck: bool, *, shortcut: str = "B", **kw: Any) -> ResNet:
    """He et al. 2016b: 9n+2 bottleneck (16/32/64 x4) or 6n+2 basic units, projections where shape changes."""
    if bottleneck:
        n = _per_stage(depth, 9, 2, "9n+2 for bottleneck units (164, 1001, ...)")
        return ResNet(PreActBottleneck, (n, n, n), (16, 32, 64), shortcut=shortcut, **kw)
    n = _per_stage(depth, 6, 2, "6n+2 for basic units (20, 56, 110, ...)")
    return ResNet(PreActBasic, (n, n, n), (16, 32, 64), shortcut=shortcut, **kw)


def wide_resnet(depth: int, width: int, *, dropout: float = 0.0, shortcut: str = "B", **kw: Any) -> ResNet:
    """WRN-depth-k (Zagoruyko & Komodakis 2016, Table 1): 6n+4 layers, pre-activation basic units with
    16k/32k/64k channels, optional dropout between the convs, 1x1 projections where shape changes."""
    n = _per_stage(depth, 6, 4, "6n+4 (16, 28, 40, ...)")
    planes = (16 * width, 32 * width, 64 * width)
    return ResNet(PreActBasic, (n, n, n), planes, shortcut=shortcut, unit_kwargs={"dropout": dropout}, **kw)


def cifar_resnext(depth: int, cardinality: int, width: int, *, shortcut: str = "B", **kw: Any) -> ResNet:
    """ResNeXt-depth (C x Wd) for CIFAR (Xie et al. 2017, Sec. 5.3): conv3x3 with 64 channels, 3 stages of
    9n+2 bottlenecks with outputs 256/512/1024 and grouped 3x3 of C·W·2^i channels, post-activation."""
    n = _per_stage(depth, 9, 2, "9n+2 (29, ...)")
    unit_kwargs = {"groups": cardinality, "base_width": width}
    return ResNet(
        Bottleneck, (n, n, n), (64, 128, 256), stem_width=64, shortcut=shortcut, unit_kwargs=unit_kwargs, **kw
    )


def imagenet_resnet(
    unit: type[ResidualUnit],
    layers: tuple[int, ...],
    *,
    shortcut: str = "B",
    groups: int = 1,
    base_width: int = 64,
    stride_in_1x1: bool = False,
    stem: str = "imagenet",
    **kw: Any,
) -> ResNet:
    """He et al. 2016, Table 1: conv7x7/2, maxpool, 4 stages (64, 128, 256, 512 x expansion), 1000-way fc.

    ``stem="cifar"`` (a conv3x3 at full resolution, no max-pool) is the ResNet-18/50 "(28)" of the MedMNIST
    benchmark (Yang et al. 2023; MedMNIST/experiments ``models.py``, after kuangliu/pytorch-cifar) for
    28 x 28 inputs."""
    unit_kwargs: dict[str, Any] = {}
    if issubclass(unit, Bottleneck):
        unit_kwargs = {"groups": groups, "base_width": base_width, "stride_in_1x1": stride_in_1x1}
    elif (groups, base_width, stride_in_1x1) != (1, 64, False):
        raise ConfigError("groups, base_width and stride_in_1x1 apply to bottleneck networks only")
    planes = (64, 128, 256, 512)
    return ResNet(
        unit, layers, planes, stem=stem, stem_width=64, shortcut=shortcut, unit_kwargs=unit_kwargs, **kw
    )


# ------------------------------------------------------------------------------------ CIFAR ResNets

_HE = "He et al. 2016, Deep Residual Learning for Image Recognition"
_HE_CIFAR = f"{_HE}, Sec. 4.2, Table 6"
_C10 = " (CIFAR-10)"


@register_model(family="resnet-cifar", depth=20, paper=_HE_CIFAR, paper_error="8.75" + _C10)
def resnet20(**kw: Any) -> ResNet:
    """ResNet-20: 3 stages x 3 basic units, option-A shortcuts (0.27M parameters)."""
    return cifar_resnet(BasicUnit, 20, **kw)


@register_model(family="resnet-cifar", depth=32, paper=_HE_CIFAR, paper_error="7.51" + _C10)
def resnet32(**kw: Any) -> ResNet:
    """ResNet-32: 3 stages x 5 basic units, option-A shortcuts (0.46M parameters)."""
    return cifar_resnet(BasicUnit, 32, **kw)


@register_model(family="resnet-cifar", depth=44, paper=_HE_CIFAR, paper_error="7.17" + _C10)
def resnet44(**kw: Any) -> ResNet:
    """ResNet-44: 3 stages x 7 basic units, option-A shortcuts (0.66M parameters)."""
    return cifar_resnet(BasicUnit, 44, **kw)


@register_model(family="resnet-cifar", depth=56, paper=_HE_CIFAR, paper_error="6.97" + _C10)
def resnet56(**kw: Any) -> ResNet:
    """ResNet-56: 3 stages x 9 basic units, option-A shortcuts (0.85M parameters)."""
    return cifar_resnet(BasicUnit, 56, **kw)


@register_model(family="resnet-cifar", depth=110, paper=_HE_CIFAR, paper_error="6.43, mean 6.61" + _C10)
def resnet110(**kw: Any) -> ResNet:
    """ResNet-110: 3 stages x 18 basic units, option-A shortcuts (1.7M parameters)."""
    return cifar_resnet(BasicUnit, 110, **kw)


@register_model(family="resnet-cifar", depth=1202, paper=_HE_CIFAR, paper_error="7.93" + _C10)
def resnet1202(**kw: Any) -> ResNet:
    """ResNet-1202: 3 stages x 200 basic units, option-A shortcuts (19.4M parameters; overfits, Sec. 4.2)."""
    return cifar_resnet(BasicUnit, 1202, **kw)


@register_model(family="resnet-cifar", depth=20, paper=_HE_CIFAR, name="resnet")
def resnet(depth: int = 20, **kw: Any) -> ResNet:
    """CIFAR ResNet of any depth 6n+2 (``depth=...``, default 20)."""
    return cifar_resnet(BasicUnit, depth, **kw)


# ------------------------------------------------------------------------------------- plain twins

_HE_PLAIN = f"{_HE}, Sec. 4.2, Fig. 6 (errors plotted only)"


@register_model(family="plain-cifar", depth=20, paper=_HE_PLAIN)
def plain20(**kw: Any) -> ResNet:
    """Plain-20: ResNet-20's layers without shortcuts."""
    return cifar_resnet(PlainUnit, 20, **kw)


@register_model(family="plain-cifar", depth=32, paper=_HE_PLAIN)
def plain32(**kw: Any) -> ResNet:
    """Plain-32: ResNet-32's layers without shortcuts."""
    return cifar_resnet(PlainUnit, 32, **kw)


@register_model(family="plain-cifar", depth=44, paper=_HE_PLAIN)
def plain44(**kw: Any) -> ResNet:
    """Plain-44: ResNet-44's layers without shortcuts."""
    return cifar_resnet(PlainUnit, 44, **kw)


@register_model(family="plain-cifar", depth=56, paper=_HE_PLAIN)
def plain56(**kw: Any) -> ResNet:
    """Plain-56: ResNet-56's layers without shortcuts."""
    return cifar_resnet(PlainUnit, 56, **kw)


@register_model(family="plain-cifar", depth=110, paper=_HE_PLAIN)
def plain110(**kw: Any) -> ResNet:
    """Plain-110: ResNet-110's layers without shortcuts (He et al. 2016 Sec. 4.2 found it hard to train)."""
    return cifar_resnet(PlainUnit, 110, **kw)


@register_model(family="plain-cifar", depth=20, paper=_HE_PLAIN, name="plain")
def plain(depth: int = 20, **kw: Any) -> ResNet:
    """Plain CIFAR network of any depth 6n+2 (``depth=...``, default 20)."""
    return cifar_resnet(PlainUnit, depth, **kw)


# ----------------------------------------------------------------------------------- highway twins

_HIGHWAY = "Srivastava et al. 2015, Training Very Deep Networks (gated twin of the CIFAR ResNet)"


@register_model(family="highway-cifar", depth=20, paper=_HIGHWAY)
def highway20(**kw: Any) -> ResNet:
    """Highway-20: ResNet-20's layers, each unit gated by T(x) (see ``HighwayUnit``)."""
    return cifar_resnet(HighwayUnit, 20, **kw)


@register_model(family="highway-cifar", depth=32, paper=_HIGHWAY)
def highway32(**kw: Any) -> ResNet:
    """Highway-32: ResNet-32's layers, each unit gated by T(x)."""
    return cifar_resnet(HighwayUnit, 32, **kw)


@register_model(family="highway-cifar", depth=44, paper=_HIGHWAY)
def highway44(**kw: Any) -> ResNet:
    """Highway-44: ResNet-44's layers, each unit gated by T(x)."""
    return cifar_resnet(HighwayUnit, 44, **kw)


@register_model(family="highway-cifar", depth=56, paper=_HIGHWAY)
def highway56(**kw: Any) -> ResNet:
    """Highway-56: ResNet-56's layers, each unit gated by T(x)."""
    return cifar_resnet(HighwayUnit, 56, **kw)


@register_model(family="highway-cifar", depth=110, paper=_HIGHWAY)
def highway110(**kw: Any) -> ResNet:
    """Highway-110: ResNet-110's layers, each unit gated by T(x)."""
    return cifar_resnet(HighwayUnit, 110, **kw)


@register_model(family="highway-cifar", depth=20, paper=_HIGHWAY, name="highway")
def highway(depth: int = 20, **kw: Any) -> ResNet:
    """Highway CIFAR network of any depth 6n+2 (``depth=...``, default 20)."""
    return cifar_resnet(HighwayUnit, depth, **kw)


# ------------------------------------------------------------------------ pre-activation ResNets

_HE_B = "He et al. 2016b, Identity Mappings in Deep Residual Networks"


_HE_B_SMALL = f"{_HE_B} (full pre-activation units at a depth of He et al. 2016's Table 6; no paper number)"


@register_model(family="preact-resnet-cifar", depth=20, paper=_HE_B_SMALL)
def preact_resnet20(**kw: Any) -> ResNet:
    """Pre-activation ResNet-20: 3 x 3 full pre-activation basic units, the depth of ResNet-20."""
    return preact_resnet(20, bottleneck=False, **kw)


@register_model(family="preact-resnet-cifar", depth=56, paper=_HE_B_SMALL)
def preact_resnet56(**kw: Any) -> ResNet:
    """Pre-activation ResNet-56: 3 x 9 full pre-activation basic units (the relatives experiment's)."""
    return preact_resnet(56, bottleneck=False, **kw)


@register_model(family="preact-resnet-cifar", depth=110, paper=f"{_HE_B}, Table 2", paper_error="6.37" + _C10)
def preact_resnet110(**kw: Any) -> ResNet:
    """Pre-activation ResNet-110: 3 x 18 full pre-activation basic units (1.7M parameters)."""
    return preact_resnet(110, bottleneck=False, **kw)


@register_model(
    family="preact-resnet-cifar",
    depth=164,
    paper=f"{_HE_B}, Table 3",
    paper_error="5.46 / 24.33 (CIFAR-10 / 100)",
)
def preact_resnet164(**kw: Any) -> ResNet:
    """Pre-activation ResNet-164: 3 x 18 bottleneck units, 16/32/64 x4 channels (1.7M parameters)."""
    return preact_resnet(164, bottleneck=True, **kw)


@register_model(
    family="preact-resnet-cifar",
    depth=1001,
    paper=f"{_HE_B}, Table 3",
    paper_error="4.92 / 22.71 (CIFAR-10 / 100)",
)
def preact_resnet1001(**kw: Any) -> ResNet:
    """Pre-activation ResNet-1001: 3 x 111 bottleneck units, 16/32/64 x4 channels (10.2M parameters)."""
    return preact_resnet(1001, bottleneck=True, **kw)


@register_model(family="preact-resnet-cifar", depth=164, paper=_HE_B, name="preact_resnet")
def preact_resnet_any(depth: int = 164, bottleneck: bool = True, **kw: Any) -> ResNet:
    """Pre-activation ResNet of any depth (``depth=``: 9n+2 with ``bottleneck=True``, else 6n+2)."""
    return preact_resnet(depth, bottleneck, **kw)


# ------------------------------------------------------------------------------------ wide ResNets

_WRN = "Zagoruyko & Komodakis 2016, Wide Residual Networks, Table 4"


@register_model(family="wrn-cifar", depth=16, paper=_WRN, paper_error="4.27 / 20.43 (CIFAR-10 / 100)")
def wrn16_8(**kw: Any) -> ResNet:
    """WRN-16-8: 3 x 2 pre-activation basic units, 128/256/512 channels (11.0M parameters)."""
    return wide_resnet(16, 8, **kw)


@register_model(family="wrn-cifar", depth=28, paper=_WRN, paper_error="4.00 / 19.25 (CIFAR-10 / 100)")
def wrn28_10(**kw: Any) -> ResNet:
    """WRN-28-10: 3 x 4 pre-activation basic units, 160/320/640 channels (36.5M parameters)."""
    return wide_resnet(28, 10, **kw)


@register_model(family="wrn-cifar", depth=40, paper=_WRN, paper_error="4.53 / 21.18 (CIFAR-10 / 100)")
def wrn40_4(**kw: Any) -> ResNet:
    """WRN-40-4: 3 x 6 pre-activation basic units, 64/128/256 channels (8.9M parameters)."""
    return wide_resnet(40, 4, **kw)


@register_model(family="wrn-cifar", depth=16, paper=_WRN, name="wrn")
def wrn(depth: int = 16, width: int = 1, **kw: Any) -> ResNet:
    """WRN of any depth 6n+4 and width factor (``depth=``, ``width=``; default WRN-16-1)."""
    return wide_resnet(depth, width, **kw)


# ---------------------------------------------------------------------------------- CIFAR ResNeXt

_XIE = "Xie et al. 2017, Aggregated Residual Transformations for Deep Neural Networks"


@register_model(
    family="resnext-cifar", depth=29, paper=f"{_XIE}, Table 7", paper_error="3.65 / 17.77 (CIFAR-10 / 100)"
)
def resnext29_8x64d(**kw: Any) -> ResNet:
    """ResNeXt-29 (8x64d): 3 x 3 bottlenecks, cardinality 8, 64 channels per group (34.4M parameters)."""
    return cifar_resnext(29, cardinality=8, width=64, **kw)


@register_model(
    family="resnext-cifar", depth=29, paper=f"{_XIE}, Table 7", paper_error="3.58 / 17.31 (CIFAR-10 / 100)"
)
def resnext29_16x64d(**kw: Any) -> ResNet:
    """ResNeXt-29 (16x64d): 3 x 3 bottlenecks, cardinality 16, 64 channels per group (68.1M parameters)."""
    return cifar_resnext(29, cardinality=16, width=64, **kw)


# --------------------------------------------------------------------------------- ImageNet models

_IN = {"input_size": (3, 224, 224), "num_classes": 1000}
_TOP1 = " (ImageNet val, 10-crop)"
_TV = "architecture of torchvision (no paper number for this configuration)"


@register_model(
    family="resnet-imagenet", depth=18, paper=f"{_HE}, Table 2", paper_error="27.88 top-1" + _TOP1, **_IN
)
def resnet18(**kw: Any) -> ResNet:
    """ResNet-18 (Table 1): basic units (2, 2, 2, 2), option-B shortcuts; torchvision's resnet18."""
    return imagenet_resnet(BasicUnit, (2, 2, 2, 2), **kw)


@register_model(
    family="resnet-imagenet", depth=34, paper=f"{_HE}, Table 3", paper_error="24.52 top-1" + _TOP1, **_IN
)
def resnet34(**kw: Any) -> ResNet:
    """ResNet-34 (Table 1): basic units (3, 4, 6, 3), option-B shortcuts; torchvision's resnet34."""
    return imagenet_resnet(BasicUnit, (3, 4, 6, 3), **kw)


@register_model(
    family="resnet-imagenet", depth=50, paper=f"{_HE}, Table 3", paper_error="22.85 top-1" + _TOP1, **_IN
)
def resnet50(**kw: Any) -> ResNet:
    """ResNet-50 (Table 1): bottlenecks (3, 4, 6, 3); torchvision's resnet50 (stride in the 3x3, "V1.5")."""
    return imagenet_resnet(Bottleneck, (3, 4, 6, 3), **kw)


@register_model(
    family="resnet-imagenet", depth=101, paper=f"{_HE}, Table 3", paper_error="21.75 top-1" + _TOP1, **_IN
)
def resnet101(**kw: Any) -> ResNet:
    """ResNet-101 (Table 1): bottlenecks (3, 4, 23, 3); torchvision's resnet101."""
    return imagenet_resnet(Bottleneck, (3, 4, 23, 3), **kw)


@register_model(
    family="resnet-imagenet", depth=152, paper=f"{_HE}, Table 3", paper_error="21.43 top-1" + _TOP1, **_IN
)
def resnet152(**kw: Any) -> ResNet:
    """ResNet-152 (Table 1): bottlenecks (3, 8, 36, 3); torchvision's resnet152."""
    return imagenet_resnet(Bottleneck, (3, 8, 36, 3), **kw)


@register_model(
    family="plain-imagenet", depth=18, paper=f"{_HE}, Table 2", paper_error="27.94 top-1" + _TOP1, **_IN
)
def plain18(**kw: Any) -> ResNet:
    """Plain-18 (Table 1/2): ResNet-18's layers without shortcuts."""
    return imagenet_resnet(PlainUnit, (2, 2, 2, 2), shortcut="A", **kw)


@register_model(
    family="plain-imagenet", depth=34, paper=f"{_HE}, Table 2", paper_error="28.54 top-1" + _TOP1, **_IN
)
def plain34(**kw: Any) -> ResNet:
    """Plain-34 (Table 1/2, Fig. 3 middle): ResNet-34's layers without shortcuts."""
    return imagenet_resnet(PlainUnit, (3, 4, 6, 3), shortcut="A", **kw)


@register_model(
    family="resnext-imagenet",
    depth=50,
    paper=f"{_XIE}, Table 3",
    paper_error="22.2 top-1 (ImageNet val, 1-crop)",
    **_IN,
)
def resnext50_32x4d(**kw: Any) -> ResNet:
    """ResNeXt-50 (32x4d): bottlenecks (3, 4, 6, 3), cardinality 32, 4 channels per group; torchvision's."""
    return imagenet_resnet(Bottleneck, (3, 4, 6, 3), groups=32, base_width=4, **kw)


@register_model(family="resnext-imagenet", depth=101, paper=f"{_XIE}; {_TV}", **_IN)
def resnext101_32x8d(**kw: Any) -> ResNet:
    """ResNeXt-101 (32x8d): bottlenecks (3, 4, 23, 3), cardinality 32, 8 channels per group; torchvision's."""
    return imagenet_resnet(Bottleneck, (3, 4, 23, 3), groups=32, base_width=8, **kw)


@register_model(family="wrn-imagenet", depth=50, paper=f"Zagoruyko & Komodakis 2016; {_TV}", **_IN)
def wide_resnet50_2(**kw: Any) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with a twice wider 3x3 in every bottleneck; torchvision's."""
    return imagenet_resnet(Bottleneck, (3, 4, 6, 3), base_width=128, **kw)


@register_model(family="wrn-imagenet", depth=101, paper=f"Zagoruyko & Komodakis 2016; {_TV}", **_IN)
def wide_resnet101_2(**kw: Any) -> ResNet:
    """Wide ResNet-101-2: ResNet-101 with a twice wider 3x3 in every bottleneck; torchvision's."""
    return imagenet_resnet(Bottleneck, (3, 4, 23, 3), base_width=128, **kw)
