"""Encoders of reinforcement-learning agents: images of a game (N, C, H, W) -> features -> ``fc`` (one
output per action; ``num_classes=0``: the features alone, which is how :mod:`reslab.tasks.rl` hands them
to stable-baselines3's policy and value heads).

- ``impala_resnet``: the deep network of IMPALA (Espeholt et al. 2018, Fig. 3 right; openai/baselines
  ``build_impala_cnn``): per stage a 3x3 convolution, a 3x3 max-pool of stride 2 ("same" padding) and two
  residual blocks ReLU-conv3x3-ReLU-conv3x3 + identity; 16/32/32 channels; then ReLU, flatten, a
  256-unit linear layer and ReLU. ``widths``, ``blocks`` (per stage) and ``hidden`` are configurable.
- ``impala_plain``: the same layers without the identity (``y = F(x)``): its plain twin.
- ``nature_cnn``: the Nature DQN network (Mnih et al. 2015, Methods "Model architecture"; SB3's
  ``NatureCNN``): 32 8x8/4, 64 4x4/2, 64 3x3/1 convolutions with ReLU, a 512-unit linear layer and
  ReLU. Its kernels need inputs of at least 36x36 (84x84 in the paper).
- ``minatar_cnn``: the network of the MinAtar paper for its 10x10 images (Young & Tian 2019, Sec. 4;
  kenjyoung/MinAtar ``examples/dqn.py``): one 16 3x3/1 convolution with ReLU and a 128-unit linear layer
  with ReLU, "a quarter of" the Nature network. It stands in for the Nature CNN on MinAtar, whose
  10x10 frames the Nature kernels do not fit (8x8/4 leaves 1x1, and the 4x4 kernel then has no input).

The flattened size depends on the input, so every encoder takes ``img_size`` (the default is the
registered input: 84x84 Atari frames, 10x10 MinAtar frames). Every convolution is a
:class:`~reslab.models.base.ResidualUnit` so lesions and gradient profiles apply: IMPALA's blocks are
pre-activation units (identity shortcut, nothing after the addition); the convolutions of the two small
CNNs are plain units (``y = ReLU(conv(x))``) whose path when *deleted* is a parameter-free window average
of the conv's geometry with zero-padded channels (:class:`WindowShortcut`: reslab's, not the papers').

Deviations: PyTorch's default initialization (IMPALA's code uses TensorFlow's Glorot-uniform; SB3 re-
initializes a PPO policy orthogonally anyway); inputs are not rescaled here (SB3 divides uint8 frames by
255; MinAtar's are 0/1). The IMPALA network's LSTM and the paper's shallow network are not included.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ConfigError
from reslab.models.base import ClassifierHead, ResidualUnit, stage_units
from reslab.models.registry import register_model

_ESPEHOLT = "Espeholt et al. 2018, IMPALA, Fig. 3 (right: the deep residual network)"
_MNIH = "Mnih et al. 2015, Human-level control through deep RL, Methods: model architecture"
_YOUNG = "Young & Tian 2019, MinAtar, Sec. 4 (the DQN / AC network)"
NATURE_CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))  # (channels, kernel, stride)
MINATAR_CONVS = ((16, 3, 1),)


def _pair(size: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ConfigError(f"img_size must be positive, got {size}")
    return int(h), int(w)


class ImpalaUnit(ResidualUnit):
    """ReLU-conv3x3-ReLU-conv3x3 (+ the identity): a block of IMPALA's residual network (convolutions with
    bias, no BN). ``residual=False``: the plain twin ``y = F(x)`` (the identity stays as the path of a
    deleted unit)."""

    post_act = False

    def __init__(self, width: int, residual: bool = True) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            OrderedDict(
                relu1=nn.ReLU(),
                conv1=nn.Conv2d(width, width, 3, padding=1),
                relu2=nn.ReLU(),
                conv2=nn.Conv2d(width, width, 3, padding=1),
            )
        )
        self.shortcut = nn.Identity()
        self.has_shortcut = residual

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.residual.conv2.weight)


class WindowShortcut(nn.Module):
    """The path of a deleted plain convolution (reslab's, for lesions): the mean over the conv's window
    (kernel ``k``, stride ``s``, no padding), channels zero-padded (or cut) to ``cout``."""

    def __init__(self, cin: int, cout: int, k: int, s: int) -> None:
        super().__init__()
        self.cin, self.cout, self.k, self.s = cin, cout, k, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, self.k, self.s)
        return F.pad(x, (0, 0, 0, 0, 0, self.cout - self.cin)) if self.cout > self.cin else x[:, : self.cout]

    def extra_repr(self) -> str:
        return f"{self.cin}, {self.cout}, kernel={self.k}, stride={self.s}"


class ConvUnit(ResidualUnit):
    """A plain convolution with ReLU, ``y = ReLU(conv(x))`` (no shortcut term: ``has_shortcut = False``)."""

    def __init__(self, cin: int, cout: int, k: int, s: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(OrderedDict(conv1=nn.Conv2d(cin, cout, k, stride=s)))
        self.shortcut = WindowShortcut(cin, cout, k, s)
        self.has_shortcut = False


class AgentEncoder(ClassifierHead, nn.Module):
    """``[down{i} ->] layer{i}`` per stage, then [ReLU], flatten, ``fc1`` (``hidden`` units) + ReLU, and ``fc``
    (``num_classes`` outputs; 0: the ``hidden`` features). ``down{i}`` (IMPALA: conv3x3 + max-pool 3x3/2)
    is ``None`` for the plain CNNs; ``layer{i}`` holds the stage's units."""

    def __init__(self, stages: list[tuple[nn.Module | None, list[ResidualUnit]]], channels: int,
                 img_size: tuple[int, int], *, hidden: int, final_relu: bool, num_classes: int,
                 in_chans: int) -> None:  # fmt: skip
        super().__init__()
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}
        self.num_classes, self.in_chans, self.num_features = num_classes, in_chans, hidden
        self.final_relu = final_relu
        self.stage_names = tuple(f"layer{i + 1}" for i in range(len(stages)))
        self._downs = []
        for i, (down, units) in enumerate(stages):
            if down is not None:
                self.add_module(f"down{i + 1}", down)
            self._downs.append(down is not None)
            self.add_module(f"layer{i + 1}", nn.Sequential(*units))
        self.stem_names: tuple[str, ...] = ("down1",) if self._downs[0] else ()
        with torch.no_grad():  # the flattened size at img_size (on the meta device: no compute)
            probe = torch.zeros(1, in_chans, *img_size, device="meta")
            try:
                flat = self.forward_features(probe).flatten(1).shape[1]
            except RuntimeError as e:
                raise ConfigError(
                    f"input {img_size[0]}x{img_size[1]} is too small for this encoder: {e}"
                ) from None
        self.fc1 = nn.Linear(flat, hidden)
        self.fc = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()
        self.img_size = img_size
        self.flat_features = flat

    @property
    def blocks(self) -> list[ResidualUnit]:
        """The units (IMPALA's residual blocks; the plain CNNs' convolutions) in forward order."""
        return stage_units(self)

    def forward_stages(self, x: torch.Tensor, *, stem: bool = False) -> list[torch.Tensor]:
        """Each stage's output (after its units); ``stem=True`` puts the first ``down``'s output first."""
        out = []
        for i, name in enumerate(self.stage_names):
            if self._downs[i]:
                x = getattr(self, f"down{i + 1}")(x)
                if stem and i == 0:
                    out.append(x)
            x = getattr(self, name)(x)
            out.append(x)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (before the final ReLU and the flatten)."""
        return self.forward_stages(x)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """[ReLU], flatten, ``fc1`` + ReLU (``pre_logits``: stop here), ``fc``."""
        x = torch.relu(x) if self.final_relu else x
        x = torch.relu(self.fc1(x.flatten(1)))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def impala(*, residual: bool = True, widths: tuple[int, ...] = (16, 32, 32), blocks: int = 2,
           hidden: int = 256, img_size: int | tuple[int, int] = 84, num_classes: int = 18,
           in_chans: int = 4) -> AgentEncoder:  # fmt: skip
    """IMPALA's deep network (Espeholt et al. 2018, Fig. 3 right), or its plain twin (``residual=False``)."""
    if not widths or min(widths) < 1 or blocks < 0 or hidden < 1:
        raise ConfigError(f"widths, blocks and hidden must be positive, got {widths}, {blocks}, {hidden}")
    stages, cin = [], in_chans
    for w in widths:
        down = nn.Sequential(OrderedDict(conv=nn.Conv2d(cin, w, 3, padding=1),
                                         pool=nn.MaxPool2d(3, stride=2, padding=1)))  # fmt: skip
        stages.append((down, [ImpalaUnit(w, residual) for _ in range(blocks)]))
        cin = w
    return AgentEncoder(stages, cin, _pair(img_size), hidden=hidden, final_relu=True,
                        num_classes=num_classes, in_chans=in_chans)  # fmt: skip


def plain_cnn(convs: tuple[tuple[int, int, int], ...], *, hidden: int, img_size: int | tuple[int, int],
              num_classes: int, in_chans: int) -> AgentEncoder:  # fmt: skip
    """Convolutions (channels, kernel, stride; no padding) with ReLU, one per stage, then ``hidden`` units."""
    stages, cin = [], in_chans
    for c, k, s in convs:
        stages.append((None, [ConvUnit(cin, int(c), int(k), int(s))]))
        cin = int(c)
    return AgentEncoder(stages, cin, _pair(img_size), hidden=hidden, final_relu=False,
                        num_classes=num_classes, in_chans=in_chans)  # fmt: skip


_ATARI = {"input_size": (4, 84, 84), "num_classes": 18}  # 4 stacked 84x84 grey frames; ALE's full action set


@register_model(family="impala", depth=17, paper=_ESPEHOLT, **_ATARI)
def impala_resnet(**kw: Any) -> AgentEncoder:
    """IMPALA's residual encoder: 3 stages (conv3x3, max-pool 3x3/2, 2 residual blocks) of 16/32/32
    channels, a 256-unit layer (17 weight layers with the action layer; 1.09M parameters at 84x84x4)."""
    return impala(**kw)


@register_model(family="impala", depth=17, paper=_ESPEHOLT, **_ATARI)
def impala_plain(**kw: Any) -> AgentEncoder:
    """The plain twin of IMPALA's encoder: the same layers, no identity in the blocks (y = F(x))."""
    return impala(residual=False, **kw)


@register_model(family="nature_cnn", depth=5, paper=_MNIH, **_ATARI)
def nature_cnn(*, hidden: int = 512, img_size: int | tuple[int, int] = 84, **kw: Any) -> AgentEncoder:
    """The Nature DQN network: 32 8x8/4, 64 4x4/2, 64 3x3/1 convolutions, 512 units (1.68M at 84x84x4)."""
    return plain_cnn(NATURE_CONVS, hidden=hidden, img_size=img_size, **kw)


@register_model(family="minatar_cnn", depth=3, paper=_YOUNG, input_size=(4, 10, 10), num_classes=6)
def minatar_cnn(*, hidden: int = 128, img_size: int | tuple[int, int] = 10, **kw: Any) -> AgentEncoder:
    """MinAtar's network for 10x10 frames: one 16 3x3/1 convolution and 128 units."""
    return plain_cnn(MINATAR_CONVS, hidden=hidden, img_size=img_size, **kw)
