"""Style transfer by optimizing the image (Gatys et al. 2016, "Image Style Transfer Using Convolutional
Neural Networks", CVPR, Sec. 2-3): a picture whose loss-network features match a content image's at one
layer and whose Gram matrices match a style image's at several (:mod:`reslab.tasks.perceptual`).

:func:`stylize` is ``reslab stylize CONTENT STYLE --out OUT`` as one call: the content image resized so
that its longer side is ``size``, the style image to the same longer side, the picture started from the
content image (``init="content"``; the paper starts from white noise, ``init="noise"``, and shows that
both converge to similar results, Sec. 3.3 and Fig. 6) and optimized by L-BFGS (the paper's,
``torch.optim.LBFGS`` with a strong-Wolfe line search) or Adam. The picture is optimized in a logit
parametrization, ``x = sigmoid(z)``, so it stays in [0, 1] without clipping (deviation: Gatys et al.
optimize the pixels themselves, in the mean-subtracted 0-255 range of VGG, and clip at the end).

The loss network is any reslab image classifier (:func:`reslab.tasks.perceptual.loss_network`): ImageNet
weights (``init_from="torchvision"``, the paper's setting with VGG-19), a run of the user's, or random
weights, whose BN statistics are then set from the two images (:meth:`LossNetwork.calibrate`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reslab.data.photos import read_photo, resize_to
from reslab.errors import ConfigError
from reslab.tasks.perceptual import PerceptualLoss, Weights, loss_network

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")


@dataclass
class StylizeResult:
    """The picture (uint8 (3, H, W)), the loss after every step (``history``: dicts of ``loss``, ``content``,
    ``style``, ``tv``), the seconds spent optimizing and the loss network's description."""

    image: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    network: str = ""
    evaluations: int = 0


def _logit(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(1e-3, 1 - 1e-3)
    return torch.log(x) - torch.log1p(-x)


def optimize_image(
    loss: PerceptualLoss,
    content: torch.Tensor,
    *,
    steps: int = 100,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    init: str = "content",
    seed: int = 0,
) -> StylizeResult:
    """Gatys' optimization: ``content`` (0-1, (3, H, W)) -> the picture minimizing ``loss``. ``steps``: L-BFGS
    iterations (one ``LBFGS.step`` call with ``max_iter=steps``, at most ``1.25 steps`` loss evaluations with
    its line search; stepping one iteration per call stalls: its first step is scaled by ``1/|g|_1``) or Adam
    updates. ``history`` has one entry per loss evaluation."""
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if steps < 1:
        raise ConfigError(f"steps must be positive, got {steps}")
    target = loss.content_features(content[None])
    g = torch.Generator().manual_seed(seed)
    start = content[None] if init == "content" else torch.rand(content[None].shape, generator=g)
    z = _logit(start.to(content.device)).requires_grad_(True)
    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [z],
            lr=lr or 1.0,
            max_iter=steps,
            tolerance_grad=0.0,
            tolerance_change=0.0,
            line_search_fn="strong_wolfe",
        )
    else:
        opt = torch.optim.Adam([z], lr=lr or 0.05)
    result = StylizeResult(content)
    t0 = time.perf_counter()

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        terms = loss(torch.sigmoid(z), target)
        terms["loss"].backward()
        result.history.append({k: float(v.detach()) for k, v in terms.items()})
        result.evaluations += 1
        return terms["loss"]

    for _ in range(1 if optimizer == "lbfgs" else steps):
        opt.step(closure)
    result.seconds = time.perf_counter() - t0
    with torch.no_grad():
        result.image = torch.sigmoid(z)[0].mul(255).round().clamp(0, 255).to(torch.uint8).cpu()
    return result


def stylize(
    content: str | os.PathLike | torch.Tensor,
    style: str | os.PathLike | torch.Tensor,
    *,
    size: int = 256,
    model: str | None = None,
    init_from: str | None = None,
    weights: Weights | None = None,
    steps: int = 100,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    init: str = "content",
    seed: int = 0,
    device: Any = "cpu",
    download: bool = False,
) -> StylizeResult:
    """``content`` in the style of ``style`` (each an image file, ``skimage:NAME`` or a uint8 (3, H, W)
    tensor), longer side ``size``, through the loss network ``model`` / ``init_from``
    (:func:`~reslab.tasks.perceptual.loss_network`; random weights when ``init_from`` is ``None``, their
    BN statistics from the two images) and :func:`optimize_image`. ``download``: fetch torchvision's
    ImageNet weights if they are not in the torch.hub cache (otherwise one line)."""
    from reslab._device import resolve_device

    dev = resolve_device(device)
    c, s = (resize_to(_image(x), size).to(dev) for x in (content, style))
    net = loss_network(model, init_from, seed=seed, download=download).to(dev)
    if init_from is None:
        net.calibrate([c, s])
    loss = PerceptualLoss.for_style(net, weights or Weights(), s)
    result = optimize_image(loss, c, steps=steps, optimizer=optimizer, lr=lr, init=init, seed=seed)
    result.network = net.source
    return result


def _image(x: str | os.PathLike | torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else read_photo(x)


def parse_layers(text: str) -> tuple[str, ...]:
    """``"stem,layer1,layer2"`` -> the layer names (one line for an empty list)."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError(f"no layer names in {text!r}")
    return names


def loss_lines(history: Sequence[dict[str, float]]) -> list[str]:
    """The first and last step's loss terms, for the command line."""
    first, last = history[0], history[-1]
    return [f"{k}: {first[k]:.4g} -> {last[k]:.4g}" for k in ("loss", "content", "style", "tv")]


def write_stylized(
    result: StylizeResult, content: str, out: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """The picture as a PNG at ``out`` (marked as reslab's; an existing file needs ``overwrite`` and must be
    a PNG reslab wrote; never an input), written atomically."""
    from reslab._io import write_bytes
    from reslab.deploy.predict import output_paths
    from reslab.owned import png_bytes

    target = output_paths([str(content)], out, "stylized", overwrite=overwrite)[0]
    assert target is not None
    write_bytes(target, png_bytes(result.image))
    return target
