"""Images by name or by path, for style transfer: the photographs and textures scikit-image ships inside
its wheel (``skimage:NAME``: no download, the same bytes on every machine with the same scikit-image) or
an image file.

:data:`BUNDLED` lists the names: the colour photographs ``astronaut``, ``chelsea``, ``coffee``,
``rocket``, ``motorcycle`` (the left view of ``stereo_motorcycle``), the colour textures
``immunohistochemistry`` (a stained tissue section), ``hubble_deep_field``, ``retina``, ``colorwheel``
and the grey textures ``brick``, ``grass``, ``gravel`` (grey images are read as three equal channels).
``skimage.data``'s other images (``skin``, ``lily``, ...) are fetched from the network by scikit-image
and are not offered.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from reslab.errors import ConfigError, DataError, first_line

PREFIX = "skimage:"
COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "immunohistochemistry",
          "hubble_deep_field", "retina", "colorwheel")  # fmt: skip
GREY = ("brick", "grass", "gravel")
BUNDLED = COLOUR + GREY


def _loader(name: str) -> Callable[[], np.ndarray]:
    try:
        from skimage import data
    except ImportError:
        raise DataError("bundled images need scikit-image: pip install scikit-image") from None
    if name == "motorcycle":
        return lambda: data.stereo_motorcycle()[0]
    return getattr(data, name)


def _rgb(arr: np.ndarray) -> torch.Tensor:
    """uint8 (H, W), (H, W, 3) or (H, W, 4) -> uint8 (3, H, W) (grey repeated, alpha dropped)."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(arr[..., :3].transpose(2, 0, 1)))


def is_bundled(spec: str) -> bool:
    """Whether ``spec`` names a bundled image (``skimage:NAME``)."""
    return str(spec).startswith(PREFIX)


def read_photo(spec: str | os.PathLike) -> torch.Tensor:
    """``skimage:NAME`` (:data:`BUNDLED`) or an image file (any format Pillow reads) as uint8 (3, H, W);
    one line (:class:`ConfigError` / :class:`DataError`) for an unknown name or an unreadable file."""
    spec = str(spec)
    if is_bundled(spec):
        name = spec[len(PREFIX) :]
        if name not in BUNDLED:
            raise ConfigError(
                f"unknown bundled image {spec!r}; choose from {', '.join(BUNDLED)} (as skimage:NAME)"
            )
        return _rgb(_loader(name)())
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(spec) as im:
            return _rgb(np.asarray(im.convert("RGB")))
    except FileNotFoundError:
        raise DataError(f"no such image: {spec} (or name a bundled one, e.g. skimage:chelsea)") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read {spec} as an image: {first_line(e)}") from None


def resize_to(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """uint8 (3, H, W) resized (antialiased bilinear) so that its longer side is ``size`` (``None``: as it
    is), as float (3, h, w) on the 0-1 scale."""
    x = image.float().div(255)
    if size is None:
        return x
    if size < 8:
        raise ConfigError(f"image size must be at least 8 pixels, got {size}")
    h, w = x.shape[-2:]
    s = size / max(h, w)
    hw = (max(1, round(h * s)), max(1, round(w * s)))
    out = torch.nn.functional.interpolate(
        x[None], size=hw, mode="bilinear", antialias=True, align_corners=False
    )
    return out[0].clamp_(0, 1)


def photo_sha256(image: Any) -> str:
    """SHA-256 of a uint8 image's shape and bytes: which picture a run saw."""
    t = torch.as_tensor(image).contiguous()
    return hashlib.sha256(f"{tuple(t.shape)}".encode() + t.numpy().tobytes()).hexdigest()
