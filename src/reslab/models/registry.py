"""Name -> builder registry for the model zoo (the names are the public API).

A builder is a three-line declaration registered with :func:`register_model`; the metadata beside it
(family, depth, default input, the paper's number and reference) feeds :func:`model_info` and
``reslab models``. Parameter counts and multiply-adds are computed, never typed in: the model is built
on the ``meta`` device (no memory, no time) and counted with ``torch.utils.flop_counter``.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    family: str
    depth: int
    input_size: tuple[int, int, int]  # (C, H, W) of the paper's data
    num_classes: int
    paper: str  # citation: paper, table/section
    paper_error: str | None  # the paper's reported error for this network, with its data set
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    *,
    family: str,
    depth: int,
    input_size: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
    paper: str,
    paper_error: str | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder`` under its function name (or ``name``); a duplicate name is an error."""

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise RuntimeError(f"model {key!r} registered twice")
        _REGISTRY[key] = ModelEntry(key, builder, family, depth, input_size, num_classes, paper, paper_error)
        return builder

    return deco


def _ensure_loaded() -> None:
    # Importing the zoo modules runs their @register_model decorators.
    import reslab.models.zoo  # noqa: F401


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
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``num_classes`` and ``in_chans`` default to the paper's data set (10 / 3 for CIFAR models, 1000 / 3
    for ImageNet models). ``pretrained`` is a path to a reslab checkpoint (``.safetensors``) or a
    torchvision state-dict file; nothing is ever downloaded here. Other keyword arguments go to the
    builder (``shortcut="B"``, ``zero_init_residual=True``, ``drop_path_rate=0.1``, ``depth=...``).
    """
    entry = get_entry(name)
    kwargs["num_classes"] = entry.num_classes if num_classes is None else int(num_classes)
    kwargs["in_chans"] = entry.input_size[0] if in_chans is None else int(in_chans)
    if kwargs["num_classes"] < 1 or kwargs["in_chans"] < 1:
        raise ConfigError(
            f"num_classes and in_chans must be positive, got {kwargs['num_classes']}, {kwargs['in_chans']}"
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
    from torch.utils.flop_counter import FlopCounterMode

    entry = get_entry(name)
    with torch.device("meta"):
        model = create_model(name, **dict(kwargs_items))
        params = sum(p.numel() for p in model.parameters())
        x = torch.zeros(1, dict(kwargs_items).get("in_chans", entry.input_size[0]), *entry.input_size[1:])
        model.eval()
        with FlopCounterMode(display=False) as counter:
            model(x)
    return params, counter.get_total_flops() // 2


def count_params_and_macs(name: str, **kwargs: Any) -> tuple[int, int]:
    """(parameters, multiply-adds for one image at the default input size) of ``create_model(name, **kwargs)``.

    Multiply-adds come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix
    products; it counts 2 FLOPs per multiply-add, we report multiply-adds, as the paper's "FLOPs" are).
    BN, ReLU, pooling and the additions of shortcuts are not counted, as in the paper.
    """
    return _count(name, tuple(sorted(kwargs.items())))


def model_info(name: str, **kwargs: Any) -> dict[str, Any]:
    """Details of a registered model: family, depth, default input size, parameters, multiply-adds
    (at the default input size and number of classes), the paper's reported error and its reference."""
    entry = get_entry(name)
    params, macs = count_params_and_macs(name, **kwargs)
    doc = (entry.builder.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    return {
        "name": entry.name,
        "family": entry.family,
        "depth": entry.depth,
        "input_size": entry.input_size,
        "num_classes": entry.num_classes,
        "params": params,
        "macs": macs,
        "paper_error": entry.paper_error,
        "paper": entry.paper,
        "description": doc,
    }
