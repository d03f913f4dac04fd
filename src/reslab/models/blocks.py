"""The residual units of the zoo and their shortcuts (He et al. 2016; He et al. 2016b; Srivastava et al. 2015).

Every unit is a :class:`~reslab.models.base.ResidualUnit` whose ``residual`` is an ``nn.Sequential`` with
torchvision's layer names (``conv1``, ``bn1``, ``conv2``, ...) and whose ``shortcut`` is ``nn.Identity``,
:class:`ShortcutA` or a projection ``nn.Sequential(conv1x1, BN)`` (torchvision's ``downsample``).
The state-dict hooks installed by :func:`torchvision_names` drop ``residual.`` and rename ``shortcut.`` to
``downsample.``, so ``unit.state_dict()`` has exactly the keys of torchvision's ``BasicBlock`` /
``Bottleneck`` while the module tree keeps the branch and the shortcut apart for analysis.

Shortcut options (He et al. 2016, Sec. 3.3 "Residual Networks" and Sec. 4.1 Table 3):

- ``"A"``: identity; where the shape changes, stride-2 subsampling and zero-padded extra channels
  (no parameters; used on CIFAR, Sec. 4.2);
- ``"B"``: identity, and a 1x1 projection (+ BN) only where the shape changes (the ImageNet default);
- ``"C"``: a 1x1 projection (+ BN) on every shortcut.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ConfigError
from reslab.models.base import ResidualUnit

SHORTCUTS = ("A", "B", "C")


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """Option A: stride-``s`` subsampling and zero-padding of the extra channels (He et al. 2016, Sec. 3.3).

    The new channels are appended after the input's (the paper does not say where the zeros go). Works on
    images (N, C, H, W) and clips (N, C, T, H, W) alike: every dimension after the channels is subsampled
    by ``stride`` (an int, or one stride per dimension), as Hara et al. 2018's type-A shortcut in 3D.
    """

    def __init__(self, cin: int, cout: int, stride: int | tuple[int, ...]) -> None:
        super().__init__()
        if cout < cin:
            raise ConfigError(f"option-A shortcut cannot reduce channels ({cin} -> {cout}); use 'B'")
        self.cin, self.cout, self.stride = cin, cout, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = x.ndim - 2
        strides = (self.stride,) * dims if isinstance(self.stride, int) else self.stride
        if any(s > 1 for s in strides):
            x = x[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]
        return F.pad(x, (0, 0) * dims + (0, self.cout - self.cin)) if self.cout > self.cin else x

    def extra_repr(self) -> str:
        return f"{self.cin}, {self.cout}, stride={self.stride}"


def make_shortcut(
    option: str, cin: int, cout: int, stride: int | tuple[int, ...], bn: bool = True, dims: int = 2
) -> nn.Module:
    """The shortcut of a unit mapping ``cin`` channels to ``cout`` with ``stride`` (option A, B or C).

    Projections are ``nn.Sequential(conv1x1, BN)`` (torchvision's ``downsample.0/1``); pre-activation units
    pass ``bn=False`` (a bare 1x1 conv, as in He et al. 2016b and Zagoruyko & Komodakis 2016). ``dims=3``
    gives the same shortcuts for clips (1x1x1 conv, ``BatchNorm3d``; ``stride`` may be per dimension).
    """
    if option not in SHORTCUTS:
        raise ConfigError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {option!r}")
    same = cin == cout and all(s == 1 for s in ((stride,) if isinstance(stride, int) else stride))
    if option == "C" or (option == "B" and not same):
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
        layers = [conv(cin, cout, 1, stride=stride, bias=False)] + ([norm(cout)] if bn else [])
        return nn.Sequential(*layers)
    return nn.Identity() if same else ShortcutA(cin, cout, stride)


def _seq(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


# --------------------------------------------------------------------------- torchvision state-dict names


def _save_hook(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    # The unit's own entries are the last ones in the (ordered) dict: rename them in place, in order.
    keys = [k for k in state_dict if k.startswith(prefix)]
    for k in keys:
        v = state_dict.pop(k)
        local = k[len(prefix) :]
        if local.startswith("residual."):
            local = local[len("residual.") :]
        elif local.startswith("shortcut."):
            local = "downsample." + local[len("shortcut.") :]
        state_dict[prefix + local] = v


def _load_hook(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    branch = {name for name, _ in module.residual.named_children()}
    for k in [k for k in state_dict if k.startswith(prefix)]:
        local = k[len(prefix) :]
        head = local.split(".", 1)[0]
        if head == "downsample":
            state_dict[prefix + "shortcut" + local[len("downsample") :]] = state_dict.pop(k)
        elif head in branch:
            state_dict[prefix + "residual." + local] = state_dict.pop(k)


def torchvision_names(unit: ResidualUnit) -> None:
    """Install the hooks mapping ``residual.X`` <-> ``X`` and ``shortcut.`` <-> ``downsample.``.

    They run with the unit's prefix, so wrappers (DDP's ``module.``, ``torch.compile``'s ``_orig_mod.``)
    keep working; internal names (``residual.conv1.weight``) are accepted when loading too.
    """
    unit.register_state_dict_post_hook(_save_hook)
    unit.register_load_state_dict_pre_hook(_load_hook)


# ------------------------------------------------------------------------------------------------ units


class BasicUnit(ResidualUnit):
    """Two 3x3 convs, BN after each, ReLU after the addition (He et al. 2016, Fig. 2, Fig. 5 left).

    torchvision's ``BasicBlock``: ``conv1, bn1, conv2, bn2`` and ``downsample``.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.residual = _seq(
            conv1=conv3x3(inplanes, planes, stride),
            bn1=nn.BatchNorm2d(planes),
            relu=nn.ReLU(),
            conv2=conv3x3(planes, planes),
            bn2=nn.BatchNorm2d(planes),
        )
        self.shortcut = make_shortcut(shortcut, inplanes, planes, stride)
        torchvision_names(self)


class PlainTwin:
    """Makes a unit class its plain twin (He et al. 2016, Sec. 4.1 "Plain Networks"): ``class P(PlainTwin,
    Unit)`` has Unit's layers and no shortcut term, ``y = act(F(x))``; its ``shortcut`` is the
    parameter-free option-A path, used only when the unit is deleted (``unit.deleted = True``)."""

    has_shortcut = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        if shortcut != "A":
            raise ConfigError(
                "plain networks have no shortcut; only shortcut='A' (the deletion path) is valid"
            )
        super().__init__(inplanes, planes, stride, "A")  # type: ignore[call-arg]

    def zero_init_last(self) -> None:
        raise ConfigError("zero_init_residual is meaningless for a plain network (it would zero its output)")


class PlainUnit(PlainTwin, BasicUnit):
    """The plain twin of :class:`BasicUnit`: same layers, ``y = relu(F(x))`` (:class:`PlainTwin`)."""


class HighwayUnit(BasicUnit):
    """The highway twin of :class:`BasicUnit` (Srivastava et al. 2015): ``y = T(x)·F(x) + (1 − T(x))·x``.

    Choices (the highway papers use fully connected / different conv layers, so these are ours):
    ``T(x) = sigmoid(conv1x1(x) + b)`` (``unit.gate``, stride as the unit, with a bias, no BN), the bias
    initialized to -2 (Srivastava et al. 2015, Sec. 3: a negative gate bias starts the network in carry
    behaviour); ``x`` goes through the option-A shortcut where the shape changes; ReLU after the sum as in
    the residual twin. Written as ``y = relu(x + T·(F − x))``, so the base unit's controls act on
    ``T·(F − x)``: ``gain = 0`` or a dropped path carries ``x`` alone; ``residual`` is still F, so a hook on
    it sees F(x). ``zero_init_residual`` zeroes F's last BN: then ``y = relu((1 − T)·x)``, not the identity.
    """

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "A", gate_bias: float = -2.0
    ):
        if shortcut != "A":
            raise ConfigError("highway units carry x through the option-A path; only shortcut='A' is valid")
        super().__init__(inplanes, planes, stride, "A")
        self.gate = _seq(conv=nn.Conv2d(inplanes, planes, 1, stride=stride, bias=True), sigmoid=nn.Sigmoid())
        nn.init.constant_(self.gate.conv.bias, gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        carry = self.shortcut(x)
        if self.deleted:
            return carry
        return self.merge(carry, self.gate(x) * (self.residual(x) - carry))


class Bottleneck(ResidualUnit):
    """1x1 reduce, 3x3, 1x1 expand (x4), BN after each conv, ReLU after the addition (He et al. 2016,
    Sec. 4.1 "Deeper Bottleneck Architectures", Fig. 5 right); grouped 3x3 for ResNeXt (Xie et al. 2017,
    Fig. 3c) and wider 3x3 for wide ResNets (``base_width``).

    Deviation: the stride sits in the 3x3 conv, as torchvision's "V1.5" (about 0.5% better top-1, 4.09G
    instead of 3.86G multiply-adds for ResNet-50); ``stride_in_1x1=True`` puts it in the first 1x1 as
    the paper does. torchvision's ``Bottleneck``: ``conv1..3, bn1..3`` and ``downsample``.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "B",
        *,
        groups: int = 1,
        base_width: int = 64,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * base_width / 64) * groups
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        out = planes * self.expansion
        self.residual = _seq(
            conv1=conv1x1(inplanes, width, s1),
            bn1=nn.BatchNorm2d(width),
            relu1=nn.ReLU(),
            conv2=conv3x3(width, width, s3, groups),
            bn2=nn.BatchNorm2d(width),
            relu2=nn.ReLU(),
            conv3=conv1x1(width, out),
            bn3=nn.BatchNorm2d(out),
        )
        self.shortcut = make_shortcut(shortcut, inplanes, out, stride)
        torchvision_names(self)


class PreActBasic(ResidualUnit):
    """Full pre-activation unit BN-ReLU-conv3x3-BN-ReLU-conv3x3, nothing after the addition (He et al.
    2016b, Fig. 4e); with ``dropout`` between the convs it is the wide ResNet block (Zagoruyko & Komodakis
    2016, Sec. 2, "B(3,3)" with dropout).

    Deviation: a projection shortcut takes ``x`` itself, not the pre-activated ``relu(bn1(x))`` that the
    authors' code shares with the branch in the first unit of a stage; this keeps ``shortcut`` and
    ``residual`` separate modules of ``x``.
    """

    expansion = 1
    post_act = False

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "B", dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.residual = _seq(
            bn1=nn.BatchNorm2d(inplanes),
            relu1=nn.ReLU(),
            conv1=conv3x3(inplanes, planes, stride),
            bn2=nn.BatchNorm2d(planes),
            relu2=nn.ReLU(),
            **({"dropout": nn.Dropout(dropout)} if dropout else {}),
            conv2=conv3x3(planes, planes),
        )
        self.shortcut = make_shortcut(shortcut, inplanes, planes, stride, bn=False)
        torchvision_names(self)


class PreActBottleneck(ResidualUnit):
    """Full pre-activation bottleneck BN-ReLU-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1 (x4) (He et al.
    2016b, Fig. 4e and Sec. 4 for ResNet-164/1001); stride in the 3x3. Same projection deviation as
    :class:`PreActBasic`."""

    expansion = 4
    post_act = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        out = planes * self.expansion
        self.residual = _seq(
            bn1=nn.BatchNorm2d(inplanes),
            relu1=nn.ReLU(),
            conv1=conv1x1(inplanes, planes),
            bn2=nn.BatchNorm2d(planes),
            relu2=nn.ReLU(),
            conv2=conv3x3(planes, planes, stride),
            bn3=nn.BatchNorm2d(planes),
            relu3=nn.ReLU(),
            conv3=conv1x1(planes, out),
        )
        self.shortcut = make_shortcut(shortcut, inplanes, out, stride, bn=False)
        torchvision_names(self)
