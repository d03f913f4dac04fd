"""Upscaling with a trained super-resolution network: whole images or tiles with their context
(:func:`upscale`), image files of any kind (:func:`upscale_image`, :func:`upscale_file`) and ``reslab
predict``'s :class:`Upscaler`."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ConfigError, DataError, first_line
from reslab.tasks.base import (
    Found,
    PredictRequest,
)

VAL_ROWS = 96  # HR rows of each training photograph held out for validation (a multiple of 2, 3, 4 and 8)
OPTIONS = ("scale", "patch", "loss", "val_rows")  # the task's options (a training config's task_kwargs)
LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """A 0-1 float image as uint8 on the CPU (rounded, clipped)."""
    return x.clamp(0, 1).mul_(255).round_().to(torch.uint8).cpu()


MAX_OUTPUT_PIXELS = 8192 * 8192  # what reslab predict writes at most: 201 MB of RGB bytes, tiles in between


def check_output_size(size: tuple[int, int], scale: int, image_path: str | os.PathLike) -> None:
    """One line (:class:`DataError`) where an image of ``size`` (width, height) upscaled ``scale`` times
    would exceed :data:`MAX_OUTPUT_PIXELS`."""
    w, h = size
    if w * scale * h * scale > MAX_OUTPUT_PIXELS:
        raise DataError(
            f"{image_path}: {w}x{h} pixels upscaled x{scale} would be {w * scale}x{h * scale}; reslab predict "
            f"writes at most {MAX_OUTPUT_PIXELS // 10**6}M pixels (8192x8192): crop or downscale it first"
        )


def context_radius(model: nn.Module) -> int:
    """LR pixels of context one output pixel depends on: the kernel radii of the convolutions in module
    order, each divided by the upscaling (pixel shuffles) before it. Tiles with this margin give the
    whole image's result."""
    radius, factor = 0.0, 1
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            radius += (m.kernel_size[0] // 2) * m.dilation[0] / factor
        elif isinstance(m, nn.PixelShuffle):
            factor *= m.upscale_factor
    return math.ceil(radius)


@torch.no_grad()
def upscale(model: nn.Module, image: Any, device: Any = "cpu", *, tile: int | None = None) -> torch.Tensor:
    """uint8 (C, h, w) (tensor or array; (h, w, C) arrays too) -> uint8 (C, s h, s w) through ``model``.

    ``tile``: run LR tiles of at most ``tile`` x ``tile`` pixels, each with :func:`context_radius` pixels of
    context on every side (the result is the whole image's, up to float rounding; memory stays bounded for
    large photographs); ``None``: the whole image at once.
    """
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if x.dtype != torch.uint8 or x.ndim != 3:
        raise ConfigError(f"upscale takes a uint8 image (C, H, W), got {tuple(x.shape)} {x.dtype}")
    if x.shape[0] != model.in_chans and x.shape[-1] == model.in_chans:  # type: ignore[attr-defined]
        x = x.permute(2, 0, 1)
    if tile is not None and tile < 1:
        raise ConfigError(f"tile must be positive, got {tile}")
    was_training = model.training
    model.eval()
    try:
        x = x[None].to(device).float().div_(255)
        h, w = x.shape[-2:]
        if tile is None or (h <= tile and w <= tile):
            out = model(x)[0]
        else:
            s, m = int(model.scale), context_radius(model)  # type: ignore[attr-defined]
            out = torch.empty(
                x.shape[1], h * s, w * s, dtype=torch.uint8
            )  # bytes, not floats: 1/4 the memory
            for y0 in range(0, h, tile):
                for x0 in range(0, w, tile):
                    ya, xa = max(0, y0 - m), max(0, x0 - m)
                    y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
                    part = model(x[..., ya : min(h, y1 + m), xa : min(w, x1 + m)])[0]
                    dy, dx = (y0 - ya) * s, (x0 - xa) * s
                    out[:, y0 * s : y1 * s, x0 * s : x1 * s] = _to_uint8(
                        part[:, dy : dy + (y1 - y0) * s, dx : dx + (x1 - x0) * s]
                    )
            return out
    finally:
        model.train(was_training)
    return _to_uint8(out)


def upscale_file(
    model: nn.Module | str | os.PathLike,
    image_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    device: Any = "cpu",
    tile: int | None = 128,
) -> Path:
    """Upscale an image file by ``model`` (a model or a run / checkpoint path; :func:`upscale_image`) and
    write it as a PNG to ``out_path`` (marked as reslab's: ``--overwrite`` replaces only those). Returns
    ``out_path``."""
    from reslab._io import write_bytes
    from reslab.owned import png_bytes

    write_bytes(out_path, png_bytes(upscale_image(model, image_path, device=device, tile=tile)))
    return Path(out_path)


def upscale_image(
    model: nn.Module | str | os.PathLike,
    image_path: str | os.PathLike,
    *,
    device: Any = "cpu",
    tile: int | None = 128,
) -> Any:
    """An image file (any format Pillow reads; grey, colour, with or without alpha) upscaled by ``model``,
    as a PIL image of the same kind.

    A grey image through a colour model goes in as three equal channels and comes out as its luma
    (ITU-R 601, Pillow's ``convert("L")``), a colour image through a grey model as its luma; an alpha
    channel is upscaled bicubically beside the model's output.
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(model, nn.Module):
        from reslab.models.weights import load_model

        model, _ = load_model(model)
    if not hasattr(model, "scale"):
        raise ConfigError(f"{getattr(model, 'model_name', 'this model')} is not a super-resolution model")
    scale = int(model.scale)  # type: ignore[attr-defined]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", Image.DecompressionBombWarning
            )  # the size is checked here instead
            with Image.open(image_path) as im:
                check_output_size(im.size, scale, image_path)  # from the header, before decoding
                im.load()
    except FileNotFoundError:
        raise DataError(f"no such image: {image_path}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as e:
        raise DataError(f"cannot read {image_path} as an image: {first_line(e)}") from None
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    alpha = im.getchannel("A") if im.mode in ("RGBA", "LA", "PA") else None
    grey = im.mode in ("1", "L", "LA", "I", "I;16", "F")
    chans = int(model.in_chans)  # type: ignore[attr-defined]
    src = im.convert("L") if grey or chans == 1 else im.convert("RGB")
    if chans == 3 and src.mode == "L":
        src = src.convert("RGB")
    arr = np.asarray(src)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    out = upscale(model, np.ascontiguousarray(arr), device, tile=tile).numpy()
    res = Image.fromarray(out[0] if out.shape[0] == 1 else out.transpose(1, 2, 0))
    if grey and res.mode != "L":
        res = res.convert("L")
    if alpha is not None:
        res.putalpha(alpha.resize(res.size, Image.Resampling.BICUBIC))
    return res


class Upscaler:
    """A super-resolution network loaded for ``reslab predict`` (:class:`reslab.tasks.base.FilePredictor`):
    each image upscaled (:func:`upscale_image`) into ``<stem>_x<scale>.png``; ``--out`` is required."""

    output_required = True

    def __init__(self, checkpoint: str, request: PredictRequest) -> None:
        from reslab._device import resolve_device
        from reslab.models.weights import load_model

        self.model, meta = load_model(checkpoint)
        self.device = resolve_device(request.device)
        scale = int(self.model.scale)  # type: ignore[attr-defined]
        self.output, self.warnings = f"x{scale}", []
        self.header = {"checkpoint": checkpoint, "model": meta.get("model"), "scale": scale}

    def predict(self, files: Sequence[str]) -> Iterator[Found | tuple[str, str]]:
        from reslab.owned import png_bytes

        for file in files:
            try:
                image = upscale_image(self.model, file, device=self.device)
            except DataError as e:
                yield file, str(e)
                continue
            yield Found(
                file, {"file": file, "size": list(image.size)}, [f"{file}: {self.output}"], png_bytes(image)
            )
