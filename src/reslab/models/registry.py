"""Name -> builder registry for the model zoo (the names are the public API).

A builder is a three-line declaration registered with :func:`register_model`; the metadata beside it
(family, depth, default input, the paper's number and reference) feeds :func:`model_info` and
``reslab models``. ``task`` says what a model maps to what (:data:`TASKS`): images (N, C, H, W) to logits,
clips (N, C, T, H, W) to logits, or low-resolution images to images ``scale`` times larger (such models
have no classes: ``num_classes=0``). Parameter counts and multiply-adds are computed, never typed in: the
model is built on the ``meta`` device (no memory, no time) and counted with ``torch.utils.flop_counter``.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError

# (N, C, H, W) -> logits; (N, C, T, H, W) -> logits; (N, C, H, W) -> (N, C, sH, sW).
TASKS = ("image-classification", "video-classification", "super-resolution")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    family: str
    depth: int
    input_size: tuple[int, ...]  # (C, H, W) of the paper's data; (C, T, H, W) for video models
    num_classes: int  # 0: an image-to-image model, no classes
    paper: str  # citation: paper, table/section
    paper_error: str | None  # the paper's reported error for this network, with its data set
    defaults: dict[str, Any] = field(default_factory=dict)
    task: str = "image-classification"


_REGISTRY: dict[str, ModelEntry] = {}
_ZOO_MODULES = (
    "reslab.models.zoo",
    "reslab.models.senet",
    "reslab.models.densenet",
    "reslab.models.video",
    "reslab.models.sr",
)


def register_model(
    *,
    family: str,
    depth: int,
    input_size: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    paper: str,
    paper_error: str | None = None,
    name: str | None = None,
    task: str = "image-classification",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder`` under its function name (or ``name``); a duplicate name is an error."""
    if task not in TASKS or (task == "super-resolution") != (num_classes == 0):
        raise RuntimeError(f"task must be one of {TASKS}, num_classes=0 exactly for super-resolution")

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise RuntimeError(f"model {key!r} registered twice")
        _REGISTRY[key] = ModelEntry(
            key, builder, family, depth, input_size, num_classes, paper, paper_error, task=task
        )
        return builder

    return deco


def _ensure_loaded() -> None:
    # Importing the zoo modules runs their @register_model decorators (in this order: `reslab models`).
    for module in _ZOO_MODULES:
        importlib.import_module(module)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the glob ``pattern`` (e.g. ``"resnet*"``), in zoo order."""
    _ensure_loaded()
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; an unknown name raises a ``ValueError`` naming the closest ones."""
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `reslab models`"
        raise ConfigError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    pretrained: str | None = None,
    download: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``num_classes`` and ``in_chans`` default to the paper's data set (10 / 3 for CIFAR models, 1000 / 3
    for ImageNet models). ``pretrained`` is a path to a reslab checkpoint (``.safetensors``) or a
    torchvision state-dict file (a recognized foreign convention, akamaster's CIFAR ResNets, is converted:
    :mod:`reslab.models.convert`), or ``"torchvision"``: torchvision's ``IMAGENET1K_V1`` weights for
    ``name`` from the torch.hub cache (:func:`reslab.models.hub.torchvision_weights`; SHA-256 checked;
    keep ``num_classes`` at 1000, then ``model.reset_classifier(n)``), or ``"akamaster"``: akamaster's
    CIFAR-10 ResNet-20/32/44/56 (:func:`reslab.models.convert.akamaster_weights`). Nothing is downloaded
    unless ``download=True`` (only with those two; a file named ``torchvision`` is ``"./torchvision"``). Other keyword arguments go to the builder (``shortcut="B"``,
    ``zero_init_residual=True``, ``drop_path_rate=0.1``, ``depth=...``).
    """
    entry = get_entry(name)
    if download and pretrained not in ("torchvision", "akamaster"):
        raise ConfigError('download=True applies only to pretrained="torchvision" or "akamaster"')
    if pretrained == "torchvision":  # resolved (and checked) before the model is built
        from reslab.models.hub import torchvision_weights

        pretrained = str(torchvision_weights(name, download=download))
    elif pretrained == "akamaster":
        from reslab.models.convert import akamaster_weights

        pretrained = str(akamaster_weights(name, download=download))
    if entry.num_classes:
        kwargs["num_classes"] = entry.num_classes if num_classes is None else int(num_classes)
    elif num_classes is not None:
        raise ConfigError(
            f"{name} is a {entry.task} model: it has no classes (got num_classes={num_classes})"
        )
    kwargs["in_chans"] = entry.input_size[0] if in_chans is None else int(in_chans)
    if kwargs.get("num_classes", 1) < 1 or kwargs["in_chans"] < 1:
        raise ConfigError(
            f"num_classes and in_chans must be positive, got {kwargs.get('num_classes')}, {kwargs['in_chans']}"
        )
    try:
        model = entry.builder(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{name}: {e}") from None
    model.model_name = name  # type: ignore[attr-defined]
    model.model_kwargs = {k: v for k, v in kwargs.items()}  # type: ignore[attr-defined]
    if pretrained is not None:
        from reslab.models.weights import load_pretrained

        load_pretrained(model, pretrained)
    return model


@functools.cache
def _count(name: str, kwargs_items: tuple) -> tuple[int, int]:
    entry = get_entry(name)
    kwargs = dict(kwargs_items)
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    params = sum(p.numel() for p in model.parameters())
    size = entry.input_size[1:]
    if hasattr(model, "count_macs"):  # the zoo's networks: from the layer shapes, in milliseconds
        return params, model.count_macs(size)
    return params, flop_counter_macs(model, (kwargs.get("in_chans", entry.input_size[0]), *size))


def flop_counter_macs(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Multiply-adds of one image (or clip) through ``model`` by ``torch.utils.flop_counter.FlopCounterMode`` (which
    counts 2 FLOPs per multiply-add), traced on the meta device. Slow for very deep networks (BN is
    decomposed there): the zoo's networks count from their shapes and the tests compare the two."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(1, *input_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def count_params_and_macs(name: str, **kwargs: Any) -> tuple[int, int]:
    """(parameters, multiply-adds for one image at the default input size) of ``create_model(name, **kwargs)``.

    Multiply-adds are those of convolutions and matrix products, as the paper's "FLOPs" are (ResNet-50:
    3.8G with the stride in the first 1x1, Table 1); BN, ReLU, pooling and the additions of shortcuts are
    not counted. The model is built on the ``meta`` device (no memory, no initialization).
    """
    return _count(name, tuple(sorted(kwargs.items())))


def format_count(n: int) -> str:
    """1234567 -> "1.23M", 4089184256 -> "4.09G" (three significant digits)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def model_info(name: str, **kwargs: Any) -> dict[str, Any]:
    """Details of a registered model: family, depth, default input size, parameters, multiply-adds
    (at the default input size and number of classes), the paper's reported error and its reference."""
    entry = get_entry(name)
    params, macs = count_params_and_macs(name, **kwargs)
    doc = (entry.builder.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    return {
        "name": entry.name,
        "family": entry.family,
        "task": entry.task,
        "depth": kwargs.get("depth", entry.depth),
        "input_size": entry.input_size,
        "num_classes": entry.num_classes,
        "params": params,
        "macs": macs,
        "paper_error": entry.paper_error,
        "paper": entry.paper,
        "description": doc,
    }
