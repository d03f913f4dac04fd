"""The super-resolution task: bicubic-downsampled photographs (:mod:`reslab.data.sr`) upscaled by SRResNet /
EDSR-baseline.

Default model: ``edsr_baseline_x4`` (x4, the factor both papers headline). Batches:
:class:`~reslab.data.sr.PatchSampler` (LR patches of ``patch`` pixels, default 24, i.e. SRResNet's 96-pixel
HR crops at x4; random flips and rotations). Loss: L1 (Lim et al. 2017, Sec. 4.2; Ledig et al.'s SRResNet
uses MSE: ``loss="mse"``). Evaluation: PSNR and SSIM on Y with the scale shaved from every border
(:mod:`reslab.tasks.metrics`) for the model and for bicubic upsampling, on each held-out photograph and on their
mean. :func:`upscale` is what ``reslab predict`` calls on an image file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reslab.data.sr import PatchSampler, SRData, bicubic_up, sr_data
from reslab.errors import ConfigError
from reslab.tasks.base import Task
from reslab.tasks.metrics import psnr, ssim

LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


def load_data(data_dir: Any = None, download: bool = False, *, scale: int = 4, **kw: Any) -> SRData:
    """The bundled photographs at ``scale`` (no files, nothing to download: ``data_dir`` is unused)."""
    return sr_data(scale, **kw)


def train_loader(
    data: SRData,
    batch_size: int,
    *,
    device: Any = "cpu",
    seed: int = 0,
    patch: int = 24,
    augment: bool = True,
) -> PatchSampler:
    """(LR, HR) float patch batches on the 0-1 scale."""
    return PatchSampler(data, patch, batch_size, device=device, seed=seed, augment=augment)


def sr_loss(output: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    if kind not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")
    return LOSSES[kind](output, target)


@torch.no_grad()
def upscale(model: nn.Module, image: Any, device: Any = "cpu") -> torch.Tensor:
    """uint8 (C, h, w) (tensor or array; (h, w, C) arrays too) -> uint8 (C, s h, s w) through ``model``."""
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if x.dtype != torch.uint8 or x.ndim != 3:
        raise ConfigError(f"upscale takes a uint8 image (C, H, W), got {tuple(x.shape)} {x.dtype}")
    if x.shape[0] != model.in_chans and x.shape[-1] == model.in_chans:  # type: ignore[attr-defined]
        x = x.permute(2, 0, 1)
    was_training = model.training
    model.eval()
    try:
        out = model(x[None].to(device).float().div_(255))[0]
    finally:
        model.train(was_training)
    return out.clamp_(0, 1).mul_(255).round_().to(torch.uint8).cpu()


def evaluate(model: nn.Module, data: SRData, *, device: Any = "cpu", batch_size: int = 1) -> dict[str, float]:
    """``psnr``/``ssim`` (mean over the test photographs), ``bicubic_psnr``/``bicubic_ssim``, and
    ``psnr/<name>`` etc. per photograph. ``batch_size`` is unused (the photographs differ in size)."""
    s = data.scale
    out: dict[str, float] = {}
    for name, hr, lr in zip(data.test_names, data.test_hr, data.test_lr):
        sr, bic = upscale(model, lr, device), bicubic_up(lr, s)
        out[f"psnr/{name}"], out[f"ssim/{name}"] = psnr(sr, hr, s), ssim(sr, hr, s)
        out[f"bicubic_psnr/{name}"], out[f"bicubic_ssim/{name}"] = psnr(bic, hr, s), ssim(bic, hr, s)
    for key in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim"):
        out[key] = float(np.mean([out[f"{key}/{n}"] for n in data.test_names]))
    return out


def describe(data: SRData) -> dict[str, Any]:
    """Checkpoint metadata: scale, channels, the training and test photographs and their source."""
    return {
        "dataset": "skimage-photographs",
        "scale": data.scale,
        "in_chans": data.in_chans,
        "train_images": list(data.train_names),
        "test_images": list(data.test_names),
        "source": data.source,
    }


TASK = Task(
    name="super-resolution",
    model_task="super-resolution",
    default_model="edsr_baseline_x4",
    default_model_kwargs={},
    default_data="skimage-photographs",
    primary_metric="psnr",
    higher_is_better=True,
    load_data=load_data,
    train_loader=train_loader,
    loss=sr_loss,
    evaluate=evaluate,
    describe=describe,
    aliases=("sr",),
)
