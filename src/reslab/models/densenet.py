"""Densely connected networks (Huang et al. 2017, *Densely Connected Convolutional Networks*, CVPR).

Layer l of a dense block receives the concatenation of every earlier feature map of the block and adds
``k`` (the growth rate) new channels (Sec. 3, Eq. 2): ``x_l = H_l([x_0, ..., x_{l-1}])``. Written per
layer, the block's running feature map grows as ``y = [x, H(x)]``: a residual unit whose merge is a
concatenation instead of a sum. :class:`DenseLayer` is therefore a
:class:`~reslab.models.base.ResidualUnit` (``residual`` is H, ``shortcut`` the identity), so every
analysis, the lesion study included, applies: a deleted layer passes ``[x, 0]`` (its ``k`` channels are
zeros), the exact analogue of deleting a residual unit (Veit et al. 2016).

Layer and state-dict names are torchvision's (``features.denseblock1.denselayer1.norm1``,
``features.transition1.conv``, ``features.norm5``, ``classifier``), so torchvision's state dicts load
with ``strict=True`` and give the same outputs (tests).

- ImageNet: DenseNet-121/169/201 (Table 1): 7x7/2 conv with 2k = 64 channels, max pooling, four dense
  blocks of DenseNet-BC layers (BN-ReLU-conv1x1 with 4k channels, BN-ReLU-conv3x3 with k, Sec. 3
  "Bottleneck layers"), transitions BN-ReLU-conv1x1-avgpool2 that halve the channels ("Compression",
  theta = 0.5), BN-ReLU, global pooling, a linear classifier. k = 32.
- CIFAR: DenseNet-BC-L-k (Sec. 4.2 "DenseNet" paragraph): a 3x3 conv with 2k channels, three blocks of
  (L - 4) / 6 bottleneck layers, compression 0.5. DenseNet-BC-100 (k = 12) has 0.8M parameters.

Deviations: the CIFAR stem has no BN-ReLU of its own (the paper's; the first dense layer starts with
BN-ReLU) and is named ``features.conv0`` after torchvision. Initialization is torchvision's (He normal,
fan-in; BN 1/0; classifier bias 0), not the Lua code's. ``drop_rate`` (dropout after each layer's 3x3,
the paper's 0.2 for data without augmentation) defaults to 0 as torchvision's does.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ConfigError
from reslab.models.base import ClassifierHead, ResidualUnit, drop_path, set_drop_path, stage_units
from reslab.models.blocks import conv1x1, conv3x3, torchvision_names
from reslab.models.registry import register_model
from reslab.models.zoo import _conv_macs


class DenseLayer(ResidualUnit):
    """H_l of DenseNet-B: BN-ReLU-conv1x1 (``bn_size * k`` channels)-BN-ReLU-conv3x3 (``k``), and
    ``y = [x, H(x)]`` (Huang et al. 2017, Eq. 2 and Sec. 3 "Bottleneck layers"). torchvision's
    ``_DenseLayer``: ``norm1, relu1, conv1, norm2, relu2, conv2``."""

    post_act = False

    def __init__(self, inplanes: int, growth: int, bn_size: int = 4, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.growth = growth
        layers: dict[str, nn.Module] = {
            "norm1": nn.BatchNorm2d(inplanes),
            "relu1": nn.ReLU(),
            "conv1": conv1x1(inplanes, bn_size * growth),
            "norm2": nn.BatchNorm2d(bn_size * growth),
            "relu2": nn.ReLU(),
            "conv2": conv3x3(bn_size * growth, growth),
        }
        if drop_rate:
            layers["dropout"] = nn.Dropout(drop_rate)
        self.residual = nn.Sequential(OrderedDict(layers))
        self.shortcut = nn.Identity()
        torchvision_names(self)

    def merge(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        branch = drop_path(branch, self.drop_prob, self.training)
        if self.gain != 1.0:
            branch = branch * self.gain
        return torch.cat([shortcut, branch], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deleted:  # the layer's k channels are zeros: [x, 0]
            return F.pad(self.shortcut(x), (0, 0, 0, 0, 0, self.growth))
        return self.merge(self.shortcut(x), self.residual(x))


def transition(cin: int, cout: int) -> nn.Sequential:
    """BN-ReLU-conv1x1-avgpool 2x2 between dense blocks (Sec. 3 "Pooling layers"); torchvision's names."""
    return nn.Sequential(
        OrderedDict(
            norm=nn.BatchNorm2d(cin), relu=nn.ReLU(), conv=conv1x1(cin, cout), pool=nn.AvgPool2d(2, 2)
        )
    )


class DenseNet(ClassifierHead, nn.Module):
    """``features`` (stem, ``denseblock{i}`` with ``transition{i}`` between them, ``norm5``), ReLU, global
    average pooling and ``classifier``: torchvision's layout. The stages are the dense blocks; the
    transitions belong to no stage (``--freeze features.denseblock1`` leaves ``transition1`` trainable)."""

    classifier_attr = "classifier"

    def __init__(
        self,
        growth: int,
        block_config: tuple[int, ...],
        *,
        init_features: int,
        stem: str = "imagenet",
        bn_size: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ConfigError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if not 0.0 < compression <= 1.0:
            raise ConfigError(f"compression must be in (0, 1], got {compression}")
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}
        self.num_classes, self.in_chans = num_classes, in_chans
        feats: OrderedDict[str, nn.Module] = OrderedDict()
        if stem == "imagenet":
            feats["conv0"] = nn.Conv2d(in_chans, init_features, 7, stride=2, padding=3, bias=False)
            feats["norm0"] = nn.BatchNorm2d(init_features)
            feats["relu0"] = nn.ReLU()
            feats["pool0"] = nn.MaxPool2d(3, stride=2, padding=1)
            self.stem_names: tuple[str, ...] = ("features.conv0", "features.norm0")
        else:
            feats["conv0"] = conv3x3(in_chans, init_features)
            self.stem_names = ("features.conv0",)
        c = init_features
        for i, n in enumerate(block_config):
            layers = [
                (f"denselayer{j + 1}", DenseLayer(c + j * growth, growth, bn_size, drop_rate))
                for j in range(n)
            ]
            feats[f"denseblock{i + 1}"] = nn.Sequential(OrderedDict(layers))
            c += n * growth
            if i < len(block_config) - 1:
                feats[f"transition{i + 1}"] = transition(c, int(c * compression))
                c = int(c * compression)
        feats["norm5"] = nn.BatchNorm2d(c)
        self.features = nn.Sequential(feats)
        self.stage_names = tuple(f"features.denseblock{i + 1}" for i in range(len(block_config)))
        self.num_features = c
        self.classifier = nn.Linear(c, num_classes)
        self._init_weights()
        set_drop_path(self.blocks, drop_path_rate)

    def _init_weights(self) -> None:
        for m in () if self.classifier.weight.is_meta else self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def blocks(self) -> list[ResidualUnit]:
        """The dense layers in forward order."""
        return stage_units(self)

    def forward_stages(self, x: torch.Tensor, *, stem: bool = False) -> list[torch.Tensor]:
        """The output of every dense block (before its transition); with ``stem``, first the stem's output
        before ``pool0`` (timm's feature index 0, ``features.norm0`` + ReLU; ``conv0`` for CIFAR)."""
        outs = []
        for name, m in self.features.named_children():
            if name == "norm5":
                break
            if stem and not outs and name in ("pool0", "denseblock1"):
                outs.append(x)
            x = m(x)
            if name.startswith("denseblock"):
                outs.append(x)
        if stem and not outs:  # no dense block left (a stem-only feature extractor)
            outs.append(x)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling, after ``norm5`` and ReLU (torchvision's ``forward``)."""
        return torch.relu(self.features(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def count_macs(self, input_size: tuple[int, int]) -> int:
        """Multiply-adds of the convolutions and the classifier for one (H, W) image, from the layer shapes
        (pooling changes only the size; the tests compare with ``FlopCounterMode``)."""
        size, macs = tuple(input_size), 0
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                size, n = _conv_macs(m, size)
                macs += n
            elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                k, s, p = (
                    int(v if isinstance(v, int) else v[0]) for v in (m.kernel_size, m.stride, m.padding)
                )
                size = tuple((n + 2 * p - k) // s + 1 for n in size)
        if isinstance(self.classifier, nn.Linear):
            macs += self.classifier.in_features * self.classifier.out_features
        return macs


def cifar_densenet_bc(depth: int, growth: int, **kw: Any) -> DenseNet:
    """DenseNet-BC-depth-k for CIFAR (Sec. 4.2): 3x3 conv with 2k channels, three blocks of (depth - 4) / 6
    bottleneck layers, compression 0.5."""
    n, rest = divmod(depth - 4, 6)
    if rest or n < 1:
        raise ConfigError(f"DenseNet-BC depth must be 6n+4 (40, 100, 190, 250, ...), got {depth}")
    return DenseNet(growth, (n, n, n), init_features=2 * growth, stem="cifar", **kw)


# ------------------------------------------------------------------------------------ registrations

_HUANG = "Huang et al. 2017, Densely Connected Convolutional Networks"
_IN = {"input_size": (3, 224, 224), "num_classes": 1000}
_TOP1 = " top-1 (ImageNet val, 1-crop 224)"


@register_model(
    family="densenet-imagenet", depth=121, paper=f"{_HUANG}, Table 3", paper_error="25.02" + _TOP1, **_IN
)
def densenet121(**kw: Any) -> DenseNet:
    """DenseNet-121 (Table 1): k = 32, blocks (6, 12, 24, 16) (7,978,856 parameters; torchvision's)."""
    return DenseNet(32, (6, 12, 24, 16), init_features=64, **kw)


@register_model(
    family="densenet-imagenet", depth=169, paper=f"{_HUANG}, Table 3", paper_error="23.80" + _TOP1, **_IN
)
def densenet169(**kw: Any) -> DenseNet:
    """DenseNet-169 (Table 1): k = 32, blocks (6, 12, 32, 32) (14,149,480 parameters; torchvision's)."""
    return DenseNet(32, (6, 12, 32, 32), init_features=64, **kw)


@register_model(
    family="densenet-imagenet", depth=201, paper=f"{_HUANG}, Table 3", paper_error="22.58" + _TOP1, **_IN
)
def densenet201(**kw: Any) -> DenseNet:
    """DenseNet-201 (Table 1): k = 32, blocks (6, 12, 48, 32) (20.0M parameters; torchvision's)."""
    return DenseNet(32, (6, 12, 48, 32), init_features=64, **kw)


@register_model(
    family="densenet-cifar",
    depth=100,
    paper=f"{_HUANG}, Table 2",
    paper_error="4.51 / 22.27 (CIFAR-10+ / 100+)",
    name="densenet_bc100",
)
def densenet_bc100(**kw: Any) -> DenseNet:
    """DenseNet-BC-100 (k = 12): three blocks of 16 bottleneck layers, compression 0.5 (0.8M parameters)."""
    return cifar_densenet_bc(100, 12, **kw)


@register_model(family="densenet-cifar", depth=100, paper=f"{_HUANG}, Sec. 4.2", name="densenet_bc")
def densenet_bc(depth: int = 100, growth: int = 12, **kw: Any) -> DenseNet:
    """DenseNet-BC of any depth 6n+4 and growth rate (``depth=``, ``growth=``; default L = 100, k = 12)."""
    return cifar_densenet_bc(depth, growth, **kw)
