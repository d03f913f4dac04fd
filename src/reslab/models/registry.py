"""Name -> builder registry for the model zoo (the names are the public API).

A builder is a three-line declaration registered with :func:`register_model`; the metadata beside it
(family, depth, default input, the paper's number and reference) feeds :func:`model_info` and
``reslab models``. ``task`` says what a model maps to what (:data:`TASKS`): images (N, C, H, W) to logits,
clips (N, C, T, H, W) to logits, low-resolution images to images ``scale`` times larger (such models
have no classes: ``num_classes=0``), or faces to embeddings (N, D) (registered with ``num_classes=0``: the
embedding is the output; ``num_classes=K`` adds a K-way linear classifier on it).
:meth:`ModelEntry.build` builds a network with fresh weights; loading weights into it is
:func:`reslab.models.factory.create_model`'s job. Parameter counts and multiply-adds are computed, never
typed in: the model is built on the ``meta`` device (no memory, no time) and counted with
``torch.utils.flop_counter``.

This module imports no other module of :mod:`reslab.models`: the zoo modules import it to register
their builders, and :mod:`reslab.models` imports them (in the order ``list_models`` reports).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError

# (N, C, H, W) -> logits; (N, C, T, H, W) -> logits; (N, C, H, W) -> (N, C, sH, sW); (N, C, H, W) -> (N, D).
TASKS = ("image-classification", "video-classification", "super-resolution", "face-embedding")
NO_CLASSES = ("super-resolution",)  # registered with num_classes=0 and refusing any
OPTIONAL_CLASSES = (
    "face-embedding",
)  # registered with num_classes=0 (an embedding); a classifier on request


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

    def build(
        self, *, num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any
    ) -> nn.Module:
        """The network with fresh weights: ``num_classes`` and ``in_chans`` default to the paper's data
        set, other keyword arguments go to the builder; the model remembers ``model_name`` and
        ``model_kwargs`` (what a weight file stores to rebuild it). ``num_classes=0`` (a classifier model):
        no classifier, the model returns its pooled features (timm's ``num_classes=0`` /
        ``reset_classifier(0)``)."""
        if self.num_classes or self.task in OPTIONAL_CLASSES:
            kwargs["num_classes"] = self.num_classes if num_classes is None else int(num_classes)
        elif num_classes is not None:
            raise ConfigError(
                f"{self.name} is a {self.task} model: it has no classes (got num_classes={num_classes})"
            )
        kwargs["in_chans"] = self.input_size[0] if in_chans is None else int(in_chans)
        if kwargs.get("num_classes", 1) < 0 or kwargs["in_chans"] < 1:
            raise ConfigError(
                f"num_classes must be >= 0 (0: pooled features) and in_chans positive, got "
                f"{kwargs.get('num_classes')}, {kwargs['in_chans']}"
            )
        pooled = kwargs.get("num_classes") == 0 and self.num_classes > 0
        try:
            model = self.builder(**{**kwargs, "num_classes": self.num_classes} if pooled else kwargs)
        except TypeError as e:
            raise ConfigError(f"{self.name}: {e}") from None
        if pooled:
            model.reset_classifier(0)  # type: ignore[operator]
        model.model_name = self.name  # type: ignore[attr-defined]
        model.model_kwargs = dict(kwargs)  # type: ignore[attr-defined]
        return model


_REGISTRY: dict[str, ModelEntry] = {}


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
    if task not in TASKS or (task in NO_CLASSES + OPTIONAL_CLASSES) != (num_classes == 0):
        raise RuntimeError(
            f"task must be one of {TASKS}, num_classes=0 exactly for {', '.join(NO_CLASSES + OPTIONAL_CLASSES)}"
        )

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise RuntimeError(f"model {key!r} registered twice")
        _REGISTRY[key] = ModelEntry(
            key, builder, family, depth, input_size, num_classes, paper, paper_error, task=task
        )
        return builder

    return deco


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the glob ``pattern`` (e.g. ``"resnet*"``), in zoo order."""
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; an unknown name raises a ``ValueError`` naming the closest ones."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `reslab models`"
        raise ConfigError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


@functools.cache
def _count(name: str, kwargs_items: tuple) -> tuple[int, int]:
    entry = get_entry(name)
    kwargs = dict(kwargs_items)
    with torch.device("meta"):
        model = entry.build(**kwargs)
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
    """(parameters, multiply-adds for one image at the default input size) of model ``name`` built with ``kwargs``.

    Multiply-adds are those of convolutions and matrix products, as the paper's "FLOPs" are (ResNet-50:
    3.8G with the stride in the first 1x1, Table 1); BN, ReLU, pooling and the additions of shortcuts are
    not counted. The model is built on the ``meta`` device (no memory, no initialization).
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


CATALOG = Path(__file__).with_name("catalog.json")


def catalog() -> dict[str, dict[str, Any]]:
    """:func:`model_info` of every registered model, by name, in zoo order: what ``reslab models`` prints
    (it reads the committed ``catalog.json`` instead, without importing torch; :func:`write_catalog`
    rewrites that file, a test checks it against this)."""
    return {name: json.loads(json.dumps(model_info(name))) for name in list_models()}


def write_catalog() -> Path:
    """Rewrite ``catalog.json`` from the registry (``make catalog``, after a model is added or changed)."""
    from reslab._io import write_bytes

    write_bytes(CATALOG, (json.dumps(catalog(), indent=1) + "\n").encode())
    return CATALOG
