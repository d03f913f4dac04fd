"""Evaluation metrics shared by training, analysis and reports: classification accuracy, and PSNR / SSIM for
super-resolution computed by scikit-image (``skimage.metrics``), not re-derived.

Super-resolution convention (as SRResNet, EDSR and most SR papers report): images are quantized to uint8
first, PSNR and SSIM are computed on the luminance Y of ITU-R BT.601 (``skimage.color.rgb2ycbcr``, Y in
[16, 235], as MATLAB's ``rgb2ycbcr``) with a data range of 255, after removing ``shave`` pixels (the scale
factor) at every border. SSIM uses Wang et al. 2004's settings: an 11 x 11 Gaussian window with sigma 1.5
and population covariances (``gaussian_weights=True, use_sample_covariance=False``), K1 = 0.01, K2 = 0.03.
One-channel images are used as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reslab.errors import ConfigError


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(1) == labels).double().mean() * 100)


def _hwc_uint8(img: Any) -> np.ndarray:
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.dtype != np.uint8:
        raise ConfigError(f"PSNR/SSIM take uint8 images (quantize first), got {a.dtype}")
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    return a if a.ndim == 3 else a[..., None]


def luminance(img: Any) -> np.ndarray:
    """Y (float64, 16-235) of an RGB uint8 image (C, H, W) or (H, W, C); a one-channel image as float64."""
    from skimage.color import rgb2ycbcr

    a = _hwc_uint8(img)
    if a.shape[-1] == 1:
        return a[..., 0].astype(np.float64)
    if a.shape[-1] != 3:
        raise ConfigError(f"luminance needs 1 or 3 channels, got {a.shape[-1]}")
    return rgb2ycbcr(a)[..., 0]


def _pair(pred: Any, target: Any, shave: int) -> tuple[np.ndarray, np.ndarray]:
    p, t = luminance(pred), luminance(target)
    if p.shape != t.shape:
        raise ConfigError(f"images differ in size: {p.shape} vs {t.shape}")
    if shave:
        p, t = p[shave:-shave, shave:-shave], t[shave:-shave, shave:-shave]
    return p, t


def psnr(pred: Any, target: Any, shave: int = 0) -> float:
    """PSNR in dB of uint8 ``pred`` against ``target`` on Y (module docstring); inf if identical."""
    from skimage.metrics import peak_signal_noise_ratio

    p, t = _pair(pred, target, shave)
    if np.array_equal(p, t):
        return float("inf")
    return float(peak_signal_noise_ratio(t, p, data_range=255))


def ssim(pred: Any, target: Any, shave: int = 0) -> float:
    """SSIM (Wang et al. 2004) of uint8 ``pred`` against ``target`` on Y (module docstring)."""
    from skimage.metrics import structural_similarity

    p, t = _pair(pred, target, shave)
    return float(
        structural_similarity(
            t, p, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )
