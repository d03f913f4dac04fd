"""The preprocessing a run was trained with, read from its checkpoint, and image files put through it.

The run's checkpoint (``checkpoints/best.safetensors``, see :func:`reslab.models.weights.load_model`)
carries the resolved training config in its metadata; :func:`input_spec` reads from it the input size
``(C, H, W)``, the per-channel ``mean``/``std`` (0-1 scale) and the class names. Each image is then:

1. decoded with Pillow and converted to the model's channels (``L`` for 1-channel models, ``RGB`` for
   3-channel ones: an RGB photo given to a Fashion-MNIST model becomes grey, a grey scan given to a
   CIFAR model is replicated over three channels; palette and alpha images are flattened first);
2. resized to the input size (bilinear, antialiased): directly to ``(H, W)`` for the small-image data
   sets, or, for ImageNet-style configs, shorter side to ``H / 0.875`` (256 for 224) then a center crop
   of ``(H, W)``, as torchvision's evaluation transform does;
3. for 1-channel models, matched to the training images' polarity: Fashion-MNIST and MNIST are light
   objects on a black background (training mean well below 0.5), while most photos and scans of a garment
   are dark on a light background. With ``invert="auto"`` an image whose border (the outer ~10% of
   rows and columns) is brighter than mid-grey, given to a model trained on dark backgrounds, is
   inverted (``x -> 1 - x``) and the prediction says so; ``"never"`` and ``"always"`` force it. RGB
   models are never inverted;
4. scaled to 0-1 and normalized with the run's ``mean``/``std``.

A file that cannot be read raises :class:`ImageReadError` (one line); :func:`predict_files` reports it
and classifies the others (top-``k`` classes by softmax probability, in batches: memory stays bounded by
one batch). ``reslab predict`` reaches this through :meth:`reslab.tasks.Classification.predictor`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.errors import CheckpointError, ConfigError, ReslabError, first_line

# Per-channel statistics (0-1 scale, population std over the training images) and class names of the
# data sets reslab knows, used only when a checkpoint's config lacks them (a warning says so).
KNOWN_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_IMAGENET_STYLE = ("imagenet", "imagefolder", "image-folder", "image_folder")
CROP_FRACTION = 0.875  # 224 / 256: the resize-then-center-crop ratio of ImageNet evaluation


class ImageReadError(ReslabError):
    """An image file that is missing, unreadable or not an image."""


# ---------------------------------------------------------------------------------------- loading


def load(path_or_run: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, metadata)`` of a run directory or a checkpoint file, on the CPU, float32, in eval mode.

    ``metadata["config"]`` is the run's resolved training config parsed from JSON (``{}`` if absent).
    """
    from reslab.models.weights import load_model

    if not Path(path_or_run).exists():
        raise CheckpointError(f"no such run directory or checkpoint: {path_or_run}")
    model, metadata = load_model(path_or_run)
    metadata = dict(metadata or {})
    metadata["config"] = _as_dict(metadata.get("config"))
    return model.float().eval(), metadata


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            try:  # a run may store its config as YAML text
                import yaml

                parsed = yaml.safe_load(value)
            except Exception:
                return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


# ------------------------------------------------------------------------------------- input spec


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What the network expects: ``(C, H, W)``, normalization and class names; how to get there."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    resize_crop: bool = False  # ImageNet-style: resize the shorter side, then center-crop (H, W)
    crop_resize: int | None = None  # that shorter side (default round(H * 256 / 224): 256 for 224)
    dataset: str | None = None
    fallbacks: tuple[str, ...] = ()  # which fields were not in the checkpoint (guessed)

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def resize_size(self) -> int:
        if not self.resize_crop:
            return self.input_size[1]
        return self.crop_resize or round(self.input_size[1] / CROP_FRACTION)

    def describe(self) -> str:
        c, h, w = self.input_size
        how = f"resize {self.resize_size} + center crop {h}x{w}" if self.resize_crop else f"resize to {h}x{w}"
        mean = ", ".join(f"{m:.4f}" for m in self.mean)
        std = ", ".join(f"{s:.4f}" for s in self.std)
        return f"{c}x{h}x{w} ({'L' if c == 1 else 'RGB'}), {how}, mean ({mean}), std ({std})"


def _find(sources: Sequence[dict[str, Any]], *keys: str) -> Any:
    """The first value of any of ``keys`` in ``sources`` (also one level down, e.g. ``config["data"]``).

    A string holding a JSON list or object (a value JSON-encoded twice) is decoded.
    """
    for src in sources:
        for key in keys:
            if src.get(key) is not None:
                return _maybe_json(src[key])
        for sub in ("data", "dataset_info", "input"):
            inner = _as_dict(src.get(sub))
            for key in keys:
                if inner.get(key) is not None:
                    return _maybe_json(inner[key])
    return None


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in '[{"':
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def _canonical(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    key = name.lower().replace("_", "-")
    return {"fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(
        key, {"cifar-100": "cifar100"}.get(key, key)
    )


def _parse_size(value: Any, in_chans: int) -> tuple[int, int, int] | None:
    if isinstance(value, str):
        value = [v for v in value.replace("x", ",").split(",") if v.strip()]
    try:
        size = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(size) == 2:  # (H, W)
        size = (in_chans, *size)
    return size if len(size) == 3 and all(s > 0 for s in size) else None


def _known_classes(dataset: str | None, n: int) -> tuple[str, ...] | None:
    if dataset == "fashion-mnist" and n == 10:
        from reslab.data.datasets import FASHION_MNIST_CLASSES

        return tuple(FASHION_MNIST_CLASSES)
    if dataset == "cifar10" and n == 10:
        return _CIFAR10_CLASSES
    return None


def input_spec(model: nn.Module, metadata: dict[str, Any] | None = None) -> InputSpec:
    """The preprocessing of the run that produced ``model``, from its checkpoint metadata.

    Looked up in ``metadata["config"]`` (the resolved training config), then in the metadata itself:
    ``input_size`` (C, H, W), ``mean``, ``std``, ``classes`` / ``class_names``, ``dataset``. What is
    missing is filled in from the data set's known statistics, else the model's registry entry, and
    listed in ``InputSpec.fallbacks``.
    """
    metadata = metadata or {}
    config = _as_dict(metadata.get("config"))
    sources = [config, metadata]
    fallbacks: list[str] = []
    dataset = _canonical(_find(sources, "dataset", "dataset_name"))
    in_chans = int(getattr(model, "in_chans", 3))
    num_classes = int(getattr(model, "num_classes", 0) or 0)

    size = _parse_size(_find(sources, "input_size", "input_shape", "in_shape"), in_chans)
    image_size = _find(sources, "image_size")
    if size is None and isinstance(image_size, int) and image_size > 0:
        size = (in_chans, image_size, image_size)  # an imagefolder config: square crops
    if size is None:
        fallbacks.append("input_size")
        size = _registry_size(model, in_chans)
    if size[0] != in_chans:
        raise CheckpointError(f"checkpoint config says {size[0]} input channels but the model has {in_chans}")

    mean, std = _find(sources, "mean", "data_mean"), _find(sources, "std", "data_std")
    if mean is None or std is None:
        fallbacks.append("mean/std")
        key = dataset if dataset in KNOWN_STATS else ("imagenet" if size[1] >= 160 else None)
        if key is not None and len(KNOWN_STATS[key][0]) == size[0]:
            mean, std = KNOWN_STATS[key]
        else:
            mean, std = (0.5,) * size[0], (0.5,) * size[0]
    mean, std = _per_channel(mean, size[0], "mean"), _per_channel(std, size[0], "std")
    if any(s <= 0 for s in std):
        raise CheckpointError(f"checkpoint config has a non-positive std: {std}")

    classes = _find(sources, "classes", "class_names")
    if not isinstance(classes, (list, tuple)) or (num_classes and len(classes) != num_classes):
        fallbacks.append("classes")
        classes = _known_classes(dataset, num_classes) or tuple(f"class {i}" for i in range(num_classes))
    resize_crop = dataset in _IMAGENET_STYLE or (dataset is None and size[1] >= 160)
    crop_resize = _find(sources, "resize_size")
    return InputSpec(
        input_size=size,
        mean=mean,
        std=std,
        classes=tuple(str(c) for c in classes),
        resize_crop=resize_crop,
        crop_resize=int(crop_resize) if isinstance(crop_resize, (int, float)) and crop_resize > 0 else None,
        dataset=dataset,
        fallbacks=tuple(fallbacks),
    )


def _per_channel(value: Any, channels: int, what: str) -> tuple[float, ...]:
    values = (float(value),) if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise CheckpointError(f"checkpoint config has {len(values)} {what} values for {channels} channels")
    return values


def _registry_size(model: nn.Module, in_chans: int) -> tuple[int, int, int]:
    name = getattr(model, "model_name", None)
    if name:
        try:
            from reslab.models.registry import get_entry

            _, h, w = get_entry(name).input_size
            return (in_chans, h, w)
        except ReslabError:
            pass
    return (in_chans, 32, 32)


# --------------------------------------------------------------------------------- preprocessing


INVERT_MODES = ("auto", "never", "always")


def read_image(path: str | os.PathLike, spec: InputSpec, invert: str = "never") -> torch.Tensor:
    """One image file as a normalized float tensor ``(C, H, W)``; :class:`ImageReadError` if unreadable.

    ``invert``: see the module docstring (step 3); :func:`read_image_polarity` also says whether it did.
    """
    return read_image_polarity(path, spec, invert)[0]


def read_image_polarity(
    path: str | os.PathLike, spec: InputSpec, invert: str = "auto"
) -> tuple[torch.Tensor, bool]:
    """:func:`read_image` and whether the image was inverted to match the training images' polarity."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"cannot read image {path}: is a directory")
    try:
        with Image.open(path) as im:
            im.load()
            img = _convert_mode(im, spec.channels)
    except FileNotFoundError:
        raise ImageReadError(f"cannot read image {path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read image {path}: not an image file Pillow can decode") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = first_line(e)
        raise ImageReadError(f"cannot read image {path}: {reason[:160]}") from None
    img = _resize(img, spec)
    inverted = _needs_inversion(img, spec, invert)
    if inverted:
        from PIL import ImageOps

        img = ImageOps.invert(img)
    return to_tensor(img, spec), inverted


def _needs_inversion(img: Any, spec: InputSpec, invert: str) -> bool:
    """Whether a (grey, resized) image should be inverted to match the training polarity (step 3)."""
    import numpy as np

    if invert not in INVERT_MODES:
        raise ConfigError(f"--invert must be one of {', '.join(INVERT_MODES)}, got {invert!r}")
    if spec.channels != 1 or invert == "never":
        return False
    if invert == "always":
        return True
    if spec.mean[0] >= 0.5:  # trained on light backgrounds (or unknown data): keep the image as it is
        return False
    a = np.asarray(img, dtype=np.float64) / 255.0
    h, w = a.shape
    bh, bw = max(1, h // 10), max(1, w // 10)
    border = np.concatenate([a[:bh].ravel(), a[-bh:].ravel(), a[:, :bw].ravel(), a[:, -bw:].ravel()])
    return float(border.mean()) > 0.5


def _convert_mode(im: Any, channels: int) -> Any:
    """RGB->L for 1-channel models, L->RGB for 3-channel ones; palette/alpha/16-bit images flattened."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits rather than clip.
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif im.mode == "F":
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        im = Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif im.mode in ("P", "PA", "RGBA", "LA", "1", "CMYK", "YCbCr", "HSV", "LAB", "RGBX", "RGBa"):
        if "A" in im.mode or (im.mode == "P" and "transparency" in im.info):
            # Composite onto black (the background of the small data sets) instead of keeping alpha garbage.
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            im = Image.alpha_composite(background, rgba).convert("RGB")
        else:
            im = im.convert("RGB")
    if channels == 1:
        return im.convert("L")
    if channels == 3:
        return im.convert("RGB")
    raise ConfigError(f"predict supports 1- or 3-channel models, this one has {channels} input channels")


def _resize(img: Any, spec: InputSpec) -> Any:
    from PIL import Image

    _, h, w = spec.input_size
    if not spec.resize_crop:
        return img if img.size == (w, h) else img.resize((w, h), Image.BILINEAR, reducing_gap=None)
    # Exactly the evaluation transform of reslab.data.imagefolder: T.Resize(short side) + T.CenterCrop.
    from torchvision.transforms import functional as TF

    img = TF.resize(img, spec.resize_size, interpolation=TF.InterpolationMode.BILINEAR)
    return TF.center_crop(img, [h, w])


def to_tensor(img: Any, spec: InputSpec) -> torch.Tensor:
    """A PIL image already of the right mode and size -> normalized float32 ``(C, H, W)``."""
    import numpy as np

    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return (x - mean) / std
