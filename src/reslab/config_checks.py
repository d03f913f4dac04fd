"""The rules a :class:`~reslab.config.TrainConfig` must satisfy beyond each field's annotation: the range of
every number (:data:`NUMBER_RANGES`), and the rules that relate fields (:func:`check_relations`: names,
budget, schedule, data options, initialization). Errors are one line naming the key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reslab.config_values import check_data_kwargs, check_range
from reslab.errors import ConfigError

if TYPE_CHECKING:
    from reslab.config import TrainConfig

DEVICES = ("auto", "cpu", "cuda")  # and cuda:N: ``device`` is a str with these words
SYNTHETIC_OPTIONS = ("shape", "num_classes", "train_size", "test_size", "seed")  # data_kwargs keys
MEDMNIST_OPTIONS = ("flag", "size")  # data_kwargs keys of dataset medmnist (reslab.data.medmnist)


def check_relations(cfg: TrainConfig) -> None:
    """Every number in its range, then the rules that relate fields."""
    _check_names(cfg)
    if (cfg.iterations is None) == (cfg.epochs is None):
        raise ConfigError("set exactly one of iterations and epochs (the training budget)")
    for name, bounds in NUMBER_RANGES.items():
        check_range(name, getattr(cfg, name), **bounds)
    _check_schedule(cfg)
    _check_data(cfg)
    _check_init(cfg)


_POSITIVE = {"low": 0.0, "strict": True}
_NON_NEGATIVE = {"low": 0.0}
_FRACTION = {"low": 0.0, "below": 1.0}  # [0, 1)
# The range of each numeric field (None, where a field allows it, is not checked: it means "unset").
NUMBER_RANGES: dict[str, dict[str, Any]] = {
    **dict.fromkeys(
        ("num_classes", "subset", "image_size", "batch_size", "iterations", "epochs", "lr", "gamma"),
        _POSITIVE,
    ),
    **dict.fromkeys(
        ("dist_timeout", "threads", "eval_batch_size", "eval_subset", "log_every", "checkpoint_every"),
        _POSITIVE,
    ),
    **dict.fromkeys(("val_split", "pad", "cutout", "workers", "weight_decay", "grad_clip"), _NON_NEGATIVE),
    **dict.fromkeys(("min_lr", "warmup_iters", "warmup_factor", "warmup_min_depth"), _NON_NEGATIVE),
    **dict.fromkeys(("backbone_lr_scale", "eval_every"), _NON_NEGATIVE),
    **dict.fromkeys(("momentum", "label_smoothing", "ema_decay"), _FRACTION),
}


def _check_names(cfg: TrainConfig) -> None:
    """``task`` and ``model`` are names (which exist is the registries' to say), ``device`` a device."""
    for key in ("task", "model"):
        if not getattr(cfg, key).strip():
            raise ConfigError(f"{key} must be set (a name), got {getattr(cfg, key)!r}")
    dev = cfg.device
    if dev not in DEVICES and not (dev.startswith("cuda:") and dev[5:].isdigit()):
        raise ConfigError(f"device must be one of auto, cpu, cuda, cuda:N; got {dev!r}")


def _check_schedule(cfg: TrainConfig) -> None:
    """``min_lr`` below ``lr``; milestones positive, increasing and (step schedule) before the end."""
    if cfg.min_lr > cfg.lr:
        raise ConfigError(f"min_lr ({cfg.min_lr}) must not exceed lr ({cfg.lr})")
    ms = list(cfg.milestones)
    if any(m <= 0 for m in ms) or ms != sorted(ms):
        raise ConfigError(f"milestones must be positive and increasing, got {ms}")
    budget = cfg.iterations if cfg.iterations is not None else cfg.epochs
    if cfg.schedule == "step" and ms and budget is not None and ms[-1] >= budget:
        unit = "iterations" if cfg.iterations is not None else "epochs"
        raise ConfigError(f"milestone {ms[-1]} is not before the end of training ({budget} {unit})")


def _check_data(cfg: TrainConfig) -> None:
    """``val_split`` a count or a fraction; ``data_kwargs`` the synthetic data's or MedMNIST's (which names a
    ``flag``); no cutout for imagefolder."""
    if isinstance(cfg.val_split, float) and not (cfg.val_split.is_integer() or cfg.val_split < 1):
        raise ConfigError(f"val_split must be a count of images or a fraction in (0, 1), got {cfg.val_split}")
    check_data_kwargs(
        cfg.dataset, cfg.data_kwargs, {"synthetic": SYNTHETIC_OPTIONS, "medmnist": MEDMNIST_OPTIONS}
    )
    if cfg.cutout and cfg.dataset == "imagefolder":
        raise ConfigError(
            "cutout applies to the in-memory data sets; imagefolder uses ImageNet's augmentation"
        )


def _check_init(cfg: TrainConfig) -> None:
    """``init_from: torchvision`` / ``akamaster``: the model has such weights (the name only: the file is
    looked up when training starts)."""
    if cfg.init_from == "torchvision":
        from reslab.models.hub import torchvision_url

        torchvision_url(cfg.model)
    elif cfg.init_from == "akamaster":
        from reslab.models.convert import akamaster_url

        akamaster_url(cfg.model)
