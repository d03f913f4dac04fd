"""The perceptual loss of style transfer, shared by Gatys' optimization of an image
(:mod:`reslab.deploy.stylize`) and the feed-forward style task (:mod:`reslab.tasks.style`).

- **Loss network** (:class:`LossNetwork`): any reslab image classifier, read at its stages through the
  models' ``forward_stages(x, stem=True)`` contract (docs/design.md): layer ``"stem"`` is the stem's
  output before its pooling, then ``model.stage_names`` (``layer1`` ... ``layer4`` for the ResNets). Its
  weights: ``"torchvision"`` (ImageNet, from the torch.hub cache only: :func:`loss_network`), a run or
  checkpoint of the user's, or random (seeded) weights. Inputs are 0-1 RGB images; the network's own
  normalization is applied inside (ImageNet's for torchvision weights and random ones, a run's own
  ``mean``/``std`` otherwise; a grey network sees the luma).
- **Gram matrix** (Gatys et al. 2016, "Image Style Transfer Using Convolutional Neural Networks", CVPR,
  Eq. 3): ``G_ij = sum_k F_ik F_jk`` over the ``M = H W`` positions of the ``N = C`` feature maps.
- **Style loss** (Eq. 4-5): per layer ``E_l = sum (G - A)^2 / (4 N^2 M^2)``, and ``sum_l w_l E_l`` with
  equal weights ``w_l = 1 / len(layers)`` (the paper's 1/5 over its five layers).
- **Content loss**: the mean squared difference of the content layer's features (Johnson et al. 2016,
  "Perceptual Losses for Real-Time Style Transfer and Super-Resolution", ECCV, Eq. 2). Deviation from
  Gatys' Eq. 1 (half the *sum*): a factor ``N M / 2`` that depends on the image size, absorbed into
  ``content_weight`` so one weight serves every size.
- **Total variation** (Johnson et al. Sec. 3.3; Mahendran and Vedaldi 2015): the mean squared difference
  of neighbouring pixels, horizontally plus vertically.

Random weights (no ImageNet weights here): the BatchNorm layers of a random network hold no statistics
(mean 0, variance 1), so each stage's features would grow with depth and the deepest style layer would
outweigh the others by orders of magnitude. :meth:`LossNetwork.calibrate` sets every BN's running
statistics from the images at hand (one pass in training mode, cumulative average), so every stage's
features have unit scale, as in data-dependent initialization (Kraehenbuehl et al. 2016). A trained
network keeps its statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MODEL = "resnet18"
DEFAULT_CONTENT = "layer2"
DEFAULT_STYLE = ("stem", "layer1", "layer2", "layer3")


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gatys et al.'s Gram matrix (Eq. 3): features (B, N, H, W) -> (B, N, N), ``G_ij = sum_k F_ik F_jk``."""
    f = features.flatten(2)
    return f @ f.transpose(1, 2)


def style_layer_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """``E_l = sum (G - A)^2 / (4 N^2 M^2)`` (Eq. 4), averaged over the batch; ``target_gram`` (1 or B, N, N)."""
    _, n, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):  # sums over M positions: fp32, not bf16
        diff = (gram(features.float()) - target_gram.float()) / (n * h * w)  # N M inside the square
        return diff.pow(2).sum((1, 2)).mean() / 4


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean squared difference of the content layer's features (Johnson et al. Eq. 2), in fp32."""
    return (features.float() - target.float()).pow(2).mean()


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference of horizontal plus vertical neighbours (B, C, H, W)."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


class LossNetwork(nn.Module):
    """A reslab image classifier read at its stages (module docstring): ``forward(x)`` maps 0-1 RGB
    images (B, 3, H, W) to ``{layer: features}`` for the layers asked for. The weights are frozen."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], source: str) -> None:
        super().__init__()
        if not hasattr(model, "forward_stages") or not hasattr(model, "stage_names"):
            raise ConfigError(f"{getattr(model, 'model_name', model)} has no stages (forward_stages) to read")
        self.model = model.eval().requires_grad_(False)
        self.layers: tuple[str, ...] = ("stem", *model.stage_names)  # type: ignore[arg-type]
        self.source = source
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def check(self, names: Sequence[str]) -> None:
        """One line for a layer name the network does not have."""
        for name in names:
            if name not in self.layers:
                raise ConfigError(
                    f"no layer {name!r} in {self.model.model_name}; choose from {', '.join(self.layers)}"
                )  # type: ignore[attr-defined]

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean.shape[1] == 1:  # a grey network: the luma (ITU-R 601)
            x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        outs = self.model.forward_stages(self._input(x), stem=True)  # type: ignore[operator]
        feats = dict(zip(self.layers, outs))
        return feats if names is None else {n: feats[n] for n in names}

    @torch.no_grad()
    def calibrate(self, images: Sequence[torch.Tensor]) -> None:
        """Every BN's running statistics from ``images`` (0-1, (3, H, W) each; one pass each in training
        mode, cumulative average): unit-scale features in a random network (module docstring)."""
        bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # the cumulative average over the images
        self.model.train()
        for image in images:
            self.model.forward_stages(self._input(image[None]), stem=True)  # type: ignore[operator]
        self.model.eval()


def loss_network(
    model: str | None = None, init_from: str | None = None, *, seed: int = 0, download: bool = False
) -> LossNetwork:
    """The loss network: ``model`` (a registered classifier, default :data:`DEFAULT_MODEL`) with
    ``init_from`` ``"torchvision"`` (ImageNet weights from the torch.hub cache, fetched only if
    ``download``: one line when absent), a run or checkpoint (its model unless ``model`` names the
    same), or ``None``: random weights drawn with ``seed`` (BN statistics to be set by
    :meth:`LossNetwork.calibrate`)."""
    from reslab.models import create_model, model_info

    if init_from not in (None, "torchvision"):
        from reslab.models.weights import load_model

        net, meta = load_model(init_from)
        if model is not None and model != meta.get("model"):
            raise ConfigError(f"--init-from {init_from} holds {meta.get('model')}, not {model}")
        mean, std = meta.get("mean") or IMAGENET_MEAN, meta.get("std") or IMAGENET_STD
        return LossNetwork(net, mean, std, f"{meta.get('model')} from {init_from}")
    name = model or DEFAULT_MODEL
    if model_info(name)["task"] != "image-classification":
        raise ConfigError(
            f"the loss network must be an image classifier; {name} is {model_info(name)['task']}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = create_model(name)
    if init_from == "torchvision":
        from reslab.models.hub import torchvision_weights
        from reslab.models.weights import load_checkpoint

        load_checkpoint(net, torchvision_weights(name, download=download))
        return LossNetwork(net, IMAGENET_MEAN, IMAGENET_STD, f"{name}, torchvision's ImageNet weights")
    if int(getattr(net, "in_chans", 3)) != 3:
        raise ConfigError(f"{name} takes {net.in_chans} channels; a random loss network needs an RGB model")  # type: ignore[attr-defined]
    return LossNetwork(net, IMAGENET_MEAN, IMAGENET_STD, f"{name}, random weights (seed {seed})")


@dataclass
class Weights:
    """The perceptual loss's layers and weights: ``content_weight * content + style_weight * style +
    tv_weight * tv``."""

    content_layer: str = DEFAULT_CONTENT
    style_layers: tuple[str, ...] = DEFAULT_STYLE
    content_weight: float = 1.0
    style_weight: float = 1e3
    tv_weight: float = 100.0

    def check(self) -> None:
        for key in ("content_weight", "style_weight", "tv_weight"):
            if not float(getattr(self, key)) >= 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not self.style_layers:
            raise ConfigError("give at least one style layer")


@dataclass
class PerceptualLoss:
    """The loss of an image (batch) against a style image's Gram matrices and a content batch's
    features: ``__call__(output, content_features) -> {"loss", "content", "style", "tv"}`` (each weighted
    term and the raw ones)."""

    net: LossNetwork
    weights: Weights
    style_grams: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def for_style(cls, net: LossNetwork, weights: Weights, style: torch.Tensor) -> PerceptualLoss:
        """The loss with the style image's (0-1, (3, H, W)) Gram matrices computed once."""
        weights.check()
        net.check([weights.content_layer, *weights.style_layers])
        with torch.no_grad():
            feats = net(style[None], weights.style_layers)
        return cls(net, weights, {k: gram(v) for k, v in feats.items()})

    def content_features(self, content: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(content, [self.weights.content_layer])[self.weights.content_layer]

    def __call__(self, output: torch.Tensor, content_features: torch.Tensor) -> dict[str, torch.Tensor]:
        w = self.weights
        feats = self.net(output, list(dict.fromkeys([w.content_layer, *w.style_layers])))
        c = content_loss(feats[w.content_layer], content_features)
        s = sum(style_layer_loss(feats[k], self.style_grams[k]) for k in w.style_layers) / len(w.style_layers)
        t = tv_loss(output)
        total = w.content_weight * c + w.style_weight * s + w.tv_weight * t
        return {"loss": total, "content": c, "style": s, "tv": t}  # type: ignore[dict-item]


def describe_weights(weights: Weights) -> dict[str, Any]:
    """The loss's settings as JSON."""
    return {"content_layer": weights.content_layer, "style_layers": list(weights.style_layers),
            "content_weight": weights.content_weight, "style_weight": weights.style_weight,
            "tv_weight": weights.tv_weight}  # fmt: skip
