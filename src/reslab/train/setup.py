"""Setting up what the loop trains: the model (built, initialized from pretrained weights, parts
frozen), the optimizer (parameter groups, kernels), the execution wrappers (DDP, ``torch.compile``), the
EMA of the weights, the process-wide flags (cuDNN autotuning, threads, determinism, seeds).

Each piece is a function of the config, testable on its own; the loop in :mod:`reslab.train.engine`
calls them once, in this order: :func:`backend_flags`, :func:`configure_process`, :func:`check_model_config`
(before the data loads), :func:`seed_everything`, :func:`build_model` (through the task),
:func:`freeze`, :func:`make_optimizer`, :class:`EMA`, :func:`wrap_model`.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from reslab._device import resolve_device
from reslab.config import TrainConfig
from reslab.errors import ConfigError
from reslab.tasks.base import Dist


def model_depth(name: str, kwargs: dict[str, Any]) -> int:
    try:
        from reslab.models.registry import get_entry

        return int(kwargs.get("depth", get_entry(name).depth))
    except Exception:
        return 0


def check_model_config(cfg: TrainConfig) -> None:
    """Build the model on the meta device (instant): an unknown name or bad depth fails before data loads."""
    from reslab.models import create_model

    with torch.device("meta"):
        create_model(cfg.model, **cfg.model_kwargs)


def freeze(model: nn.Module, cfg: TrainConfig) -> list[nn.Module]:
    """Freeze the named parts (``stem``, ``layer1``...) or the whole backbone; returns the frozen modules
    (kept in eval mode: their BN statistics are frozen too)."""
    names = [n.strip() for n in cfg.freeze if n.strip()]
    if not names and not cfg.freeze_backbone:
        return []
    stem = tuple(getattr(model, "stem_names", ()))
    stages = tuple(getattr(model, "stage_names", ()))
    modules: list[nn.Module] = []
    if cfg.freeze_backbone:
        head = model.get_classifier()  # type: ignore[operator]
        head_params = {id(p) for p in head.parameters()}
        for p in model.parameters():
            if id(p) not in head_params:
                p.requires_grad_(False)
        modules = [m for m in model.children() if m is not head]
        return modules
    valid = ("stem", *stem, *stages)
    for n in names:
        if n == "stem":
            targets = list(stem)
        elif n in valid:
            targets = [n]
        else:
            raise ConfigError(f"--freeze: unknown part {n!r}; choose from {', '.join(valid)}")
        for t in targets:
            mod = model.get_submodule(t)
            for p in mod.parameters():
                p.requires_grad_(False)
            modules.append(mod)
    return modules


def head_parameter_ids(model: nn.Module) -> set[int]:
    """The parameters ``backbone_lr_scale`` leaves at the full learning rate: the classifier's; for a
    detector or segmenter (:mod:`reslab.models.dense`) everything outside the backbone network
    (``model.backbone.body``: the FPN and the heads are new layers)."""
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        return {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    body = getattr(getattr(model, "backbone", None), "body", None)
    if isinstance(body, nn.Module):
        inside = {id(p) for p in body.parameters()}
        return {id(p) for p in model.parameters() if id(p) not in inside}
    return set()


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    head_ids = head_parameter_ids(model)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            if not p.requires_grad:
                continue
            no_decay = cfg.no_decay_bn_bias and (p.ndim <= 1)
            is_head = id(p) in head_ids
            groups.setdefault((is_head, no_decay), []).append(p)
    out = []
    for (is_head, no_decay), params in groups.items():
        scale = 1.0 if is_head else cfg.backbone_lr_scale
        out.append(
            {"params": params, "lr_scale": scale, "weight_decay": 0.0 if no_decay else cfg.weight_decay}
        )
    if not out:
        raise ConfigError("nothing to train: every parameter is frozen")
    return out


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (the paper's: momentum, L2 weight decay folded into the gradient) or AdamW, with the kernels
    ``cfg.optimizer_impl`` names: ``fused`` (one kernel for all parameters), ``foreach`` (a few
    multi-tensor kernels) or ``loop`` (one small kernel per parameter tensor). All three apply the same
    update; ``auto`` takes ``fused`` when every parameter is on a CUDA device (a step of a CIFAR ResNet
    is otherwise hundreds of tiny launches) and torch's own default elsewhere."""
    groups = param_groups(model, cfg)
    impl = cfg.optimizer_impl
    if impl == "auto":
        on_cuda = all(p.is_cuda for g in groups for p in g["params"])
        impl = "fused" if on_cuda else "default"
    kernels: dict[str, Any] = {
        "fused": {"fused": True},
        "foreach": {"foreach": True},
        "loop": {"foreach": False},
        "default": {},
    }[impl]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **kernels)
    return torch.optim.SGD(
        groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay, **kernels,
    )  # fmt: skip


def wrap_model(model: nn.Module, cfg: TrainConfig, dist: Dist) -> nn.Module:
    """The one place that wraps the model for the forward pass: DistributedDataParallel (gradients
    averaged over the ranks, so the update is that of the global batch; BN buffers broadcast from rank 0
    each forward), then ``torch.compile`` (``cfg.compile``: ``true``/``default``, or a mode such as
    ``reduce-overhead``, which replays the forward and backward as CUDA graphs, or
    ``max-autotune-no-cudagraphs``)."""
    fmodel = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        dev = next(model.parameters()).device
        fmodel = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile is not False:
        mode = None if cfg.compile in (True, "default") else cfg.compile
        fmodel = torch.compile(fmodel, mode=mode)  # type: ignore[assignment]
    return fmodel


class EMA:
    """Exponential moving average of the weights and float buffers (BN statistics), updated every step
    with decay ``min(decay, (1 + step) / (10 + step))`` so short runs are not dominated by the init."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._src = [t for t in model.state_dict().values() if t.is_floating_point()]
        self._dst = [t for t in self.module.state_dict().values() if t.is_floating_point()]
        self._src_int = [t for t in model.state_dict().values() if not t.is_floating_point()]
        self._dst_int = [t for t in self.module.state_dict().values() if not t.is_floating_point()]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        torch._foreach_lerp_(self._dst, self._src, 1.0 - d)
        for a, b in zip(self._dst_int, self._src_int):
            a.copy_(b)


@contextlib.contextmanager
def backend_flags(cfg: TrainConfig) -> Iterator[None]:
    """cuDNN autotuning (``cfg.cudnn_benchmark``; ``auto``: on for CUDA runs unless ``deterministic``):
    the shapes of a run never change, so timing each convolution's algorithms once pays for itself
    within a few steps. The process-wide flag is restored afterwards."""
    want = cfg.cudnn_benchmark
    if want == "auto":
        want = resolve_device(cfg.device).type == "cuda" and not cfg.deterministic
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = bool(want)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's ``random`` (the data order, augmentation and init of a fresh run)."""
    import numpy as np

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def configure_process(cfg: TrainConfig) -> None:
    """The process-wide settings of ``cfg``: CPU threads and deterministic algorithms."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
