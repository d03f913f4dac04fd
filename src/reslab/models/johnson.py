"""Johnson et al.'s image transformation network for real-time style transfer: 0-1 RGB images (N, 3, H, W)
-> stylized images of the same size on the same scale.

Johnson, Alahi and Fei-Fei 2016, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution"
(ECCV), Sec. 3.1 and the supplementary material's Table 1 (style transfer): a 9x9 convolution with 32
filters (stride 1), 3x3 convolutions with 64 and 128 filters (stride 2 each), five residual blocks of 128
filters, two 3x3 fractionally strided convolutions with 64 and 32 filters (stride 1/2 each), and a 9x9
convolution to 3 channels with a scaled tanh. Every convolution but the last is followed by a
normalization and a ReLU (in a residual block, the second convolution by the normalization only). The residual block (supplementary Fig. 1, after Gross and Wilber's): 3x3 conv,
norm, ReLU, 3x3 conv, norm, plus the identity, nothing after the addition: a
:class:`~reslab.models.base.ResidualUnit` (``post_act = False``), so ``model.blocks``, lesions and
gradient profiles work as for the classifiers; ``residual=False`` gives the plain twin.

Deviations (each named):

- **instance normalization** instead of batch normalization (Ulyanov, Vedaldi and Lempitsky 2016,
  "Instance Normalization: The Missing Ingredient for Fast Stylization"; affine, as in PyTorch's
  ``fast_neural_style`` example); ``norm="batch"`` gives the paper's BN.
- **reflection padding** of every convolution by its kernel radius, so the output has the input's size;
  Johnson et al. pad the input by 40 pixels (reflection) and use unpadded 3x3 convolutions in the residual
  blocks, cropping the shortcut.
- the output ``(tanh(x) + 1) / 2`` on the 0-1 scale (the paper's scaled tanh maps to 0-255).
- ``upsample="transpose"`` (the paper's fractionally strided convolution, ``ConvTranspose2d`` with
  ``output_padding=1``) by default; ``"nearest"`` is nearest-neighbour upsampling followed by a 3x3
  convolution (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts"), as PyTorch's example does.

Widths scale with ``width`` (32: the paper's 32/64/128); ``units`` is the number of residual blocks (5).
State-dict names are reslab's own (``conv1``-``conv3``, ``body.i``, ``up1``, ``up2``, ``out``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.models.base import ResidualUnit
from reslab.models.registry import register_model

_JOHNSON = "Johnson et al. 2016, Perceptual Losses for Real-Time Style Transfer, supplementary Table 1"


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ConfigError(f"norm must be 'instance' or 'batch', got {kind!r}")


def conv_layer(cin: int, cout: int, k: int, stride: int = 1, norm: str | None = "instance") -> nn.Sequential:
    """Reflection padding by ``k // 2``, a ``k`` x ``k`` convolution, then [norm, ReLU]."""
    layers: dict[str, nn.Module] = {
        "pad": nn.ReflectionPad2d(k // 2),
        "conv": nn.Conv2d(cin, cout, k, stride),
    }
    if norm is not None:
        layers.update(norm=_norm(norm, cout), act=nn.ReLU(inplace=True))
    return nn.Sequential(OrderedDict(layers))


def up_layer(cin: int, cout: int, norm: str, mode: str) -> nn.Sequential:
    """x2 upsampling: a 3x3 fractionally strided convolution (``"transpose"``) or nearest-neighbour
    upsampling and a 3x3 convolution (``"nearest"``), then norm and ReLU."""
    if mode == "transpose":
        layers: dict[str, nn.Module] = {
            "conv": nn.ConvTranspose2d(cin, cout, 3, 2, padding=1, output_padding=1)
        }
    elif mode == "nearest":
        layers = {"up": nn.Upsample(scale_factor=2, mode="nearest"), "pad": nn.ReflectionPad2d(1),
                  "conv": nn.Conv2d(cin, cout, 3)}  # fmt: skip
    else:
        raise ConfigError(f"upsample must be 'transpose' or 'nearest', got {mode!r}")
    return nn.Sequential(OrderedDict({**layers, "norm": _norm(norm, cout), "act": nn.ReLU(inplace=True)}))


class JohnsonUnit(ResidualUnit):
    """conv3x3 norm ReLU conv3x3 norm, identity shortcut, nothing after the addition (Johnson et al.,
    supplementary Fig. 1). ``residual=False``: the plain twin, ``y = F(x)``."""

    post_act = False

    def __init__(self, width: int, norm: str, residual: bool = True) -> None:
        super().__init__()
        one, two = conv_layer(width, width, 3, norm=norm), conv_layer(width, width, 3, norm=norm)
        del two.act  # no ReLU at the end of the branch
        self.residual = nn.Sequential(OrderedDict(block1=one, block2=two))
        self.shortcut = nn.Identity()
        self.has_shortcut = residual


class JohnsonTransformer(nn.Module):
    """``conv1`` (9x9) -> ``conv2``, ``conv3`` (3x3, stride 2) -> ``body`` (residual units) -> ``up1``,
    ``up2`` (x2 each) -> ``out`` (9x9, scaled tanh). Input: 0-1 images whose sides are multiples of 4
    (others are padded by reflection and cropped back)."""

    def __init__(
        self,
        *,
        width: int = 32,
        units: int = 5,
        norm: str = "instance",
        upsample: str = "transpose",
        residual: bool = True,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if width < 1 or units < 1:
            raise ConfigError(f"width and units must be positive, got {width}, {units}")
        self.model_name: str | None = None
        self.model_kwargs: dict[str, Any] = {}
        self.in_chans, self.num_features, self.num_classes = in_chans, 4 * width, 0
        self.conv1 = conv_layer(in_chans, width, 9, norm=norm)
        self.conv2 = conv_layer(width, 2 * width, 3, 2, norm=norm)
        self.conv3 = conv_layer(2 * width, 4 * width, 3, 2, norm=norm)
        self.body = nn.Sequential(*(JohnsonUnit(4 * width, norm, residual) for _ in range(units)))
        self.up1 = up_layer(4 * width, 2 * width, norm, upsample)
        self.up2 = up_layer(2 * width, width, norm, upsample)
        self.out = conv_layer(width, in_chans, 9, norm=None)
        self.stem_names: tuple[str, ...] = ("conv1", "conv2", "conv3")
        self.stage_names: tuple[str, ...] = ("body",)

    @property
    def blocks(self) -> list[ResidualUnit]:
        """The residual units in forward order."""
        return list(self.body)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The residual body's output at 1/4 of the input's resolution: (N, 4 width, H/4, W/4)."""
        return self.body(self.conv3(self.conv2(self.conv1(x))))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.forward_features(x)]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Features -> the image: two x2 upsamplings, the 9x9 convolution and ``(tanh + 1) / 2``."""
        return (torch.tanh(self.out(self.up2(self.up1(x)))) + 1) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ConfigError(f"{self.model_name} takes images (N, C, H, W), got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = -h % 4, -w % 4
        if ph or pw:  # sides to multiples of 4, so the two strides come back to the same size
            x = nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
        return self.forward_head(self.forward_features(x))[..., :h, :w]


@register_model(family="johnson", depth=16, paper=_JOHNSON, input_size=(3, 256, 256), num_classes=0,
                task="style-transfer")  # fmt: skip
def johnson_transformer(**kw: Any) -> JohnsonTransformer:
    """Johnson et al.'s transformation network: 32/64/128 channels, 5 residual blocks (1.68M parameters)."""
    return JohnsonTransformer(**kw)
