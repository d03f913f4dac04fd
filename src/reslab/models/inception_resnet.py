"""Inception-ResNet-v1 as FaceNet uses it (facenet-pytorch's ``InceptionResnetV1``) and Inception-ResNet-v2
(timm's ``inception_resnet_v2``), with the reference code's state-dict names.

Szegedy et al. 2017, *Inception-v4, Inception-ResNet and the Impact of Residual Connections on
Learning* (AAAI), Sec. 3 and Fig. 14-20: stem; 35x35 "Inception-ResNet-A" units (Block35), reduction A
(Mixed_6a), 17x17 "-B" units (Block17), reduction B (Mixed_7a), 8x8 "-C" units (Block8); each unit is
``y = relu(x + scale * conv1x1(concat(branches(x))))`` with the residual scaled by 0.17 / 0.10 / 0.20
(Sec. 3.3, "Scaling of the Residuals"), the last Block8 unscaled and without ReLU. Schroff et al. 2015
(FaceNet) trained embeddings; facenet-pytorch (Tim Esler, version 2.6.0,
``facenet_pytorch/models/inception_resnet_v1.py``) ports David Sandberg's TensorFlow FaceNet, whose
v1 adds the face head: average pool, dropout (0.6), ``last_linear`` 1792 -> 512 without bias and
``last_bn`` (BN1d, eps 1e-3). timm 1.0.31 (``timm/models/inception_resnet_v2.py``) gives v2 its
ImageNet head (average pool, ``head_drop``, ``classif`` 1536 -> 1000).

Every unit is a :class:`~reslab.models.base.ResidualUnit`: ``unit.residual`` is the scaled branch
``scale * conv2d(concat(branch0, branch1, ...))`` (a hook on it sees F(x) as added), ``unit.shortcut`` the
identity, ``unit.post_act`` False for the last Block8; state-dict hooks drop ``residual.`` so the keys
read ``repeat_1.0.branch1.1.conv.weight`` as in the reference. The reduction modules (``mixed_*``) are
not residual. Convolutions are conv (no bias) - BN (eps 1e-3) - ReLU, named ``conv`` / ``bn``
(facenet's ``BasicConv2d``; timm's ``ConvNormAct``, whose activation sits inside ``bn``). Weights are
initialized with PyTorch's defaults, as in both references. A user's facenet file
(``20180402-114759-vggface2.pt``, a plain state dict with ``logits`` for 8631 identities) loads with
``create_model("inception_resnet_v1", pretrained=PATH)`` (``num_classes=8631`` keeps its ``logits``).

``depth`` in the registry is the number of weighted layers (convolutions and linear layers) on the
longest path from input to output, counted from the tables below: 97 for v1 (to ``last_linear``), 176
for v2 (to ``classif``); the paper gives no depth.

Stages (``stage_names``) are the named modules after the stem, in forward order (residual repeats and
reductions alike); ``forward_stages(x, stem=True)`` first gives ``conv2d_2b``'s output (stride 2, before
``maxpool_3a``: timm's feature index 0). Deviations, named: facenet's ``forward`` L2-normalizes the
embedding unless ``classify``; here ``forward`` returns the embedding *before* normalization (``F.normalize``
of it is facenet's output) or, with ``num_classes=K``, the logits on it (facenet's ``classify=True``);
``in_chans`` and ``drop_path_rate`` (stochastic depth, off by default) are additions; timm's
``features_only`` indices 1-4 (conv2d_4a, repeat, repeat_1, conv2d_7b) differ from reslab's stage indices.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reslab.models.base import ClassifierHead, ResidualUnit, set_drop_path
from reslab.models.blocks import torchvision_names
from reslab.models.registry import register_model

# A conv layer: (out channels, kernel, stride, padding); a branch: its layers, "max" (3x3/2 max-pool) or
# ("avg", layer) (3x3/1 average pool without the padding in the count, then the layer: timm's Mixed_5b).
Layer = tuple[int, Any, int, Any]


class ConvBN(nn.Module):
    """conv (no bias) - BN (eps 1e-3, momentum 0.1) - ReLU: facenet's ``BasicConv2d``, timm's ``ConvNormAct``."""

    def __init__(self, cin: int, cout: int, kernel: Any, stride: int = 1, padding: Any = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _l(cout: int, kernel: Any = 1, stride: int = 1, padding: Any = 0) -> Layer:
    return (cout, kernel, stride, padding)


def _branch(cin: int, spec: Any) -> tuple[nn.Module, int]:
    """A branch module and its output channels: one conv bare (``branch0.conv``), several in a Sequential
    (``branch1.0.conv``), a max-pool, or an average pool then a conv (``branch3.1.conv``)."""
    if spec == "max":
        return nn.MaxPool2d(3, stride=2), cin
    if spec[0] == "avg":
        conv = ConvBN(cin, *spec[1])
        return nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), conv), spec[1][0]
    layers, c = [], cin
    for cout, *rest in spec:
        layers.append(ConvBN(c, cout, *rest))
        c = cout
    return (layers[0] if len(layers) == 1 else nn.Sequential(*layers)), c


class Concat(nn.Module):
    """``concat(branch0(x), branch1(x), ...)`` along the channels: a reduction module (Mixed_6a/7a, Mixed_5b)."""

    def __init__(self, cin: int, specs: list[Any]) -> None:
        super().__init__()
        self.out_channels = 0
        for i, spec in enumerate(specs):
            module, c = _branch(cin, spec)
            self.add_module(f"branch{i}", module)
            self.out_channels += c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [branch(x) for name, branch in self.named_children() if name.startswith("branch")], 1
        )


class ScaledBranches(Concat):
    """F(x) = ``scale * conv2d(concat(branches(x)))``: the residual of an Inception-ResNet unit, with a
    biased 1x1 ``conv2d`` back to the input's width."""

    def __init__(self, cin: int, specs: list[Any], scale: float) -> None:
        super().__init__(cin, specs)
        self.conv2d = nn.Conv2d(self.out_channels, cin, 1, stride=1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(super().forward(x)) * self.scale


class InceptionResUnit(ResidualUnit):
    """``y = relu(x + F(x))`` (no ReLU with ``relu=False``, the last Block8): Szegedy et al. 2017, Fig. 10,
    12-13 (v1) and 16-17, 19 (v2)."""

    def __init__(self, channels: int, specs: list[Any], scale: float, relu: bool = True) -> None:
        super().__init__()
        self.residual = ScaledBranches(channels, specs, scale)
        self.shortcut = nn.Identity()
        self.post_act = relu
        torchvision_names(self)

    def zero_init_last(self) -> None:
        """F(x) = 0: the final 1x1 conv's weights and bias zeroed."""
        nn.init.zeros_(self.residual.conv2d.weight)
        nn.init.zeros_(self.residual.conv2d.bias)


class InceptionResNet(ClassifierHead, nn.Module):
    """The stem (``stem_names``), the stages (``stage_names``), and a head set by the subclass."""

    def _finish(
        self, stem: list[tuple[str, nn.Module]], stages: list[tuple[str, nn.Module]], rate: float
    ) -> None:
        for name, module in stem + stages:
            self.add_module(name, module)
        self.stem_names = tuple(n for n, m in stem if any(True for _ in m.parameters()))
        self._stem_order = tuple(n for n, _ in stem)
        self.stage_names = tuple(n for n, _ in stages)
        set_drop_path(self.blocks, rate)

    @property
    def blocks(self) -> list[ResidualUnit]:
        """The residual units in forward order (the reductions are not residual)."""
        units = []
        for name in self.stage_names:
            stage = getattr(self, name)
            units += (
                [stage]
                if isinstance(stage, ResidualUnit)
                else [m for m in stage.children() if isinstance(m, ResidualUnit)]
            )
        return units

    def forward_stages(self, x: torch.Tensor, *, stem: bool = False) -> list[torch.Tensor]:
        """The output of every stage; with ``stem``, first ``conv2d_2b``'s (timm's feature index 0)."""
        outs = []
        for name in self._stem_order:
            x = getattr(self, name)(x)
            if stem and name == "conv2d_2b":
                outs.append(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outs.append(x)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map before pooling (v1: block8, 1792 channels; v2: conv2d_7b, 1536)."""
        for name in self._stem_order + self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError


def _stem(in_chans: int) -> list[tuple[str, nn.Module]]:
    """conv2d_1a .. conv2d_4a, shared by v1 and v2 (Szegedy et al. 2017, Fig. 14 for v1)."""
    return [
        ("conv2d_1a", ConvBN(in_chans, 32, 3, 2)),
        ("conv2d_2a", ConvBN(32, 32, 3, 1)),
        ("conv2d_2b", ConvBN(32, 64, 3, 1, 1)),
        ("maxpool_3a", nn.MaxPool2d(3, stride=2)),
        ("conv2d_3b", ConvBN(64, 80, 1, 1)),
        ("conv2d_4a", ConvBN(80, 192, 3, 1)),
    ]


# The tables: Block35 / Block17 / Block8 branches and the reductions, read from the references.
_A1 = [[_l(32)], [_l(32), _l(32, 3, 1, 1)], [_l(32), _l(32, 3, 1, 1), _l(32, 3, 1, 1)]]
_B1 = [[_l(128)], [_l(128), _l(128, (1, 7), 1, (0, 3)), _l(128, (7, 1), 1, (3, 0))]]
_C1 = [[_l(192)], [_l(192), _l(192, (1, 3), 1, (0, 1)), _l(192, (3, 1), 1, (1, 0))]]
_RA1 = [[_l(384, 3, 2)], [_l(192), _l(192, 3, 1, 1), _l(256, 3, 2)], "max"]
_RB1 = [[_l(256), _l(384, 3, 2)], [_l(256), _l(256, 3, 2)], [_l(256), _l(256, 3, 1, 1), _l(256, 3, 2)], "max"]
_5B = [[_l(96)], [_l(48), _l(64, 5, 1, 2)], [_l(64), _l(96, 3, 1, 1), _l(96, 3, 1, 1)], ("avg", _l(64))]
_A2 = [[_l(32)], [_l(32), _l(32, 3, 1, 1)], [_l(32), _l(48, 3, 1, 1), _l(64, 3, 1, 1)]]
_B2 = [[_l(192)], [_l(128), _l(160, (1, 7), 1, (0, 3)), _l(192, (7, 1), 1, (3, 0))]]
_C2 = [[_l(192)], [_l(192), _l(224, (1, 3), 1, (0, 1)), _l(256, (3, 1), 1, (1, 0))]]
_RA2 = [[_l(384, 3, 2)], [_l(256), _l(256, 3, 1, 1), _l(384, 3, 2)], "max"]
_RB2 = [[_l(256), _l(384, 3, 2)], [_l(256), _l(288, 3, 2)], [_l(256), _l(288, 3, 1, 1), _l(320, 3, 2)], "max"]


def _repeat(n: int, channels: int, specs: list[Any], scale: float) -> nn.Sequential:
    return nn.Sequential(*[InceptionResUnit(channels, specs, scale) for _ in range(n)])


class InceptionResnetV1(InceptionResNet):
    """facenet-pytorch's ``InceptionResnetV1`` (module docstring): 160 x 160 faces -> 512-d embedding.

    ``num_classes=K`` adds ``logits`` (512 -> K; facenet's ``classify=True, num_classes=K``);
    ``dropout_prob`` is facenet's (0.6, before ``last_linear``).
    """

    classifier_attr = "logits"

    def __init__(
        self,
        *,
        num_classes: int = 0,
        in_chans: int = 3,
        dropout_prob: float = 0.6,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}
        self.num_classes, self.in_chans, self.num_features = num_classes, in_chans, 512
        stem = [*_stem(in_chans), ("conv2d_4b", ConvBN(192, 256, 3, 2))]
        stages = [
            ("repeat_1", _repeat(5, 256, _A1, 0.17)),
            ("mixed_6a", Concat(256, _RA1)),
            ("repeat_2", _repeat(10, 896, _B1, 0.10)),
            ("mixed_7a", Concat(896, _RB1)),
            ("repeat_3", _repeat(5, 1792, _C1, 0.20)),
            ("block8", InceptionResUnit(1792, _C1, 1.0, relu=False)),
        ]
        self._finish(stem, stages, drop_path_rate)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout_prob)
        self.last_linear = nn.Linear(1792, 512, bias=False)
        self.last_bn = nn.BatchNorm1d(512, eps=1e-3, momentum=0.1)
        self.logits = nn.Linear(512, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool - dropout - ``last_linear`` - ``last_bn``: the embedding (``pre_logits``, or without a
        classifier), unnormalized; else ``logits`` on it."""
        x = self.last_bn(self.last_linear(torch.flatten(self.dropout(self.avgpool_1a(x)), 1)))
        return x if pre_logits else self.logits(x)


class InceptionResnetV2(InceptionResNet):
    """timm's ``inception_resnet_v2`` (module docstring): 299 x 299 images, 1536 features, ``classif``."""

    classifier_attr = "classif"

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}
        self.num_classes, self.in_chans, self.num_features = num_classes, in_chans, 1536
        stem = [*_stem(in_chans), ("maxpool_5a", nn.MaxPool2d(3, stride=2)), ("mixed_5b", Concat(192, _5B))]
        stages = [
            ("repeat", _repeat(10, 320, _A2, 0.17)),
            ("mixed_6a", Concat(320, _RA2)),
            ("repeat_1", _repeat(20, 1088, _B2, 0.10)),
            ("mixed_7a", Concat(1088, _RB2)),
            ("repeat_2", _repeat(9, 2080, _C2, 0.20)),
            ("block8", InceptionResUnit(2080, _C2, 1.0, relu=False)),
            ("conv2d_7b", ConvBN(2080, 1536, 1, 1)),
        ]
        self._finish(stem, stages, drop_path_rate)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head_drop = nn.Dropout(drop_rate)
        self.classif = nn.Linear(1536, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool - ``head_drop``: the pooled features (``pre_logits``); else ``classif``."""
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.classif(x)


# ------------------------------------------------------------------------------------ registrations

_SZEGEDY = "Szegedy et al. 2017, Inception-v4, Inception-ResNet and the Impact of Residual Connections"


@register_model(
    family="inception-resnet",
    depth=97,
    input_size=(3, 160, 160),
    num_classes=0,
    task="face-embedding",
    paper=f"{_SZEGEDY}; Schroff et al. 2015 (FaceNet); facenet-pytorch 2.6.0's InceptionResnetV1",
)
def inception_resnet_v1(**kw: Any) -> InceptionResnetV1:
    """Inception-ResNet-v1, FaceNet's face embedder: 160x160 faces -> 512-d embedding; facenet-pytorch's."""
    return InceptionResnetV1(**kw)


@register_model(
    family="inception-resnet",
    depth=176,
    input_size=(3, 299, 299),
    num_classes=1000,
    paper=f"{_SZEGEDY}; timm 1.0.31's inception_resnet_v2",
)
def inception_resnet_v2(**kw: Any) -> InceptionResnetV2:
    """Inception-ResNet-v2: 299x299 images, 1000 classes; timm's inception_resnet_v2 (its names and layers)."""
    return InceptionResnetV2(**kw)
