"""The training configuration: one typed dataclass, the rules about its values, overrides as ``key=value``.

Beside the data they govern (one home per rule): the words each field accepts (:data:`FIELD_WORDS`), the
fields a resumed run may change (:data:`RESUME_KEYS`, :data:`MACHINE_KEYS`), each command-line field's
help text (field metadata, from which ``reslab train``'s flags are generated). Recipes (YAML files) are
read by :mod:`reslab.train.recipe`. The command line and the Python API override any
field afterwards (``--set key=value``, values parsed as YAML scalars or lists; ``model_kwargs.depth=56``
sets one key of a dict field). Every value is checked in :meth:`TrainConfig.validate`: an unknown key or a
bad value is a :class:`~reslab.errors.ConfigError` of one line naming the key (and the closest valid ones).

This module imports neither torch nor the data/model packages: building and checking a config is instant.
It sits at the bottom of the package graph (beside :mod:`reslab.errors`), so the tasks that read a config
(:mod:`reslab.tasks`) and the loop that trains it (:mod:`reslab.train`) share it without an arrow back up.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from reslab.errors import ConfigError

DEFAULT_RECIPE = "fashion_mnist"

SCHEDULES = ("step", "cosine", "linear", "constant")
WARMUP_MODES = ("linear", "constant")
OPTIMIZERS = ("sgd", "adamw")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "bf16", "off")
AUTO_BOOL = ("auto", True, False)
OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "loop")
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SYNTHETIC_OPTIONS = ("shape", "num_classes", "train_size", "test_size", "seed")  # data_kwargs keys
DATASET_NAMES = ("fashion-mnist", "cifar10", "cifar100", "synthetic", "imagefolder")
# What a run trains (``task``): each names one adapter behind :func:`reslab.train.engine.make_task`.
TASK_NAMES = ("classification", "detection", "segmentation", "video", "super-resolution")

# The words each field documents, as a user types them (``--set amp=off``). Bool-typed fields take
# YAML's spellings (true/false, yes/no, on/off); fields typed ``X | None`` also take none/null.
FIELD_WORDS: dict[str, tuple[Any, ...]] = {
    "task": TASK_NAMES,
    "schedule": SCHEDULES,
    "warmup_mode": WARMUP_MODES,
    "optimizer": OPTIMIZERS,
    "device": DEVICES,
    "amp": AMP_MODES,
    "channels_last": AUTO_BOOL,
    "cudnn_benchmark": AUTO_BOOL,
    "optimizer_impl": OPTIMIZER_IMPLS,
    "compile": COMPILE_MODES,
    "eval_batch_size": ("auto",),
}

# How a run executes, not what it computes: these may differ when a run is resumed, and between two
# invocations of the same experiment, without changing what the result means.
MACHINE_KEYS = frozenset(
    {
        "dist_timeout",
        "compile",
        "cudnn_benchmark",
        "optimizer_impl",
        "device",
        "threads",
        "tensorboard",
        "workers",
        "eval_batch_size",
        "data_dir",
        "download",
    }
)
# What ``--resume`` may change: the machine keys, and ``lr`` (to continue a diverged run more gently).
# Everything else is the run's own config. The one home of this rule: the CLI, the engine, the
# experiment runner and docs/design.md all use (or are tested against) this set.
RESUME_KEYS = MACHINE_KEYS | {"lr"}


def config_difference(
    stored: Mapping[str, Any],
    want: Mapping[str, Any],
    *,
    ignore: Collection[str] = MACHINE_KEYS,
    only: Collection[str] | None = None,
) -> list[tuple[str, Any, Any]]:
    """The one rule for "is this the same config?": the fields where ``stored`` (a run's ``config.yaml``,
    a checkpoint's record, a published run: possibly written by an older engine) differs from ``want``,
    as ``(key, stored value, wanted value)`` in ``want``'s order. Resume, experiment planning, publishing
    and reuse all ask it.

    Keys in ``ignore`` are not compared (default :data:`MACHINE_KEYS`: how a run executes, not what it
    computes; resume ignores :data:`RESUME_KEYS`); with ``only``, just those keys are. A field
    ``stored`` lacks was written before the field existed: it holds the field's default, the behaviour
    of the engine that wrote it. Values compare after a YAML/JSON round trip (``1.0 == 1``, tuples as
    lists)."""
    defaults = _defaults()
    out = []
    for key, value in want.items():
        if key in ignore or (only is not None and key not in only):
            continue
        have = stored[key] if key in stored else defaults.get(key)
        if norm_value(have) != norm_value(value):
            out.append((key, have, value))
    return out


def norm_value(v: Any) -> Any:
    """A config value in a form that compares equal across YAML/JSON round trips (1.0 == 1, tuples as lists)."""
    if isinstance(v, (list, tuple)):
        return [norm_value(x) for x in v]
    if isinstance(v, dict):
        return {k: norm_value(x) for k, x in sorted(v.items())}
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _defaults() -> dict[str, Any]:
    return TrainConfig().to_dict()


def _help(text: str, metavar: str | None = None) -> dict[str, str]:
    """A field's help text (``reslab train --help`` shows it: the command line's flags are generated
    from the fields that have one) and, optionally, the flag's metavar."""
    return {"help": text, "metavar": metavar} if metavar else {"help": text}


@dataclass
class TrainConfig:
    """Everything that defines a training run. Units: ``lr`` etc. per *step* (one optimizer update);
    the budget is ``iterations`` or ``epochs`` (exactly one); ``milestones`` and ``warmup_iters`` follow
    the budget's unit for milestones (iterations or epochs) and are always iterations for warm-up.
    """

    # -- what
    recipe: str = DEFAULT_RECIPE  # recorded for the summary; set by load_recipe
    task: str = field(
        default="classification",
        metadata=_help(
            "what to train: classification (default), detection, segmentation, video or super-resolution; "
            "without --recipe, the recipe of that name (e.g. detection.yaml) is the starting point",
            "TASK",
        ),
    )
    # the task's own options (detection: arch, train_size, size, trainable_layers, ...; see docs/dense.md);
    # each task refuses a key it does not know
    task_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata=_help("options of the task, set one at a time: --set task_kwargs.arch=retinanet"),
    )
    model: str = field(
        default="resnet20",
        metadata=_help("model name from `reslab models` (e.g. resnet20, resnet56, plain20)"),
    )
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # to create_model (shortcut, depth, ...)
    num_classes: int | None = field(
        default=None,
        metadata=_help("replace the classifier with an N-class one (default: the data set's classes)", "N"),
    )
    dataset: str = field(
        default="fashion-mnist", metadata=_help("fashion-mnist, cifar10, cifar100, synthetic or imagefolder")
    )
    data_dir: str | None = field(
        default=None, metadata=_help("folder holding the data set (default: searched, see docs)")
    )
    download: bool = field(
        default=False,
        metadata=_help(
            "allow downloads: the data set if missing, and with --init-from torchvision the weights if not in "
            "the torch.hub cache"
        ),
    )
    # options of the data set; synthetic: shape [C, H, W], num_classes, train_size, test_size, seed
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    subset: int | None = field(
        default=None, metadata=_help("train on N training images (seeded, stratified)", "N")
    )
    # an int is a count (it must fit the data, else an error), a float a fraction (fits any data size)
    val_split: int | float = field(
        default=0,
        metadata=_help(
            "hold N training images out for validation (selects the best checkpoint); a fraction in (0, 1) "
            "holds out that share",
            "N",
        ),
    )
    augment: bool = True  # random crop with `pad` zero padding + horizontal flip (if valid)
    pad: int = 4
    cutout: int = 0  # with augment: Cutout square side in pixels (DeVries & Taylor 2017); 0: off
    image_size: int = 224  # imagefolder only
    workers: int = 8  # imagefolder only: decoding worker processes

    # -- budget
    batch_size: int = field(default=128, metadata=_help("mini-batch size (global: over all ranks)"))
    iterations: int | None = field(
        default=None, metadata=_help("training budget in iterations (optimizer steps)")
    )
    epochs: float | None = field(default=None, metadata=_help("training budget in epochs"))

    # -- optimizer
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = field(default=0.1, metadata=_help("peak learning rate"))
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = field(default=1e-4, metadata=_help("L2 weight decay"))
    no_decay_bn_bias: bool = False  # exclude BN parameters and biases from weight decay
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # 0: off; else evaluate and export an EMA of the weights (e.g. 0.999)
    grad_clip: float = 0.0  # 0: off; else clip the global gradient norm
    # the optimizer's kernels (same update rule, same math): auto = fused on CUDA, torch's default on CPU
    optimizer_impl: str = "auto"  # auto | fused | foreach | loop

    # -- schedule
    schedule: str = "step"  # step | cosine | linear (decay to min_lr) | constant
    milestones: list[float] = field(default_factory=list)  # step: in the budget's unit
    gamma: float = 0.1  # step: multiply lr by this at each milestone
    min_lr: float = 0.0  # cosine/linear: final lr
    warmup_iters: int = 0
    warmup_mode: str = "linear"  # linear: from warmup_factor*lr up to lr; constant: warmup_factor*lr
    warmup_factor: float = 0.0
    warmup_min_depth: int = 0  # apply warm-up only to models at least this deep (paper: 110 layers)

    # -- fine-tuning
    init_from: str | None = field(
        default=None,
        metadata=_help(
            "start from a reslab run/checkpoint or a torchvision state-dict file (akamaster's CIFAR ResNets "
            "are recognized and converted); 'torchvision': torchvision's ImageNet weights for --model from "
            "the torch.hub cache, 'akamaster': akamaster's CIFAR-10 ResNet-20/32/44/56 (fetched, SHA-256 "
            "checked, only with --download)",
            "PATH",
        ),
    )
    freeze: list[str] = field(
        default_factory=list, metadata=_help("comma-separated parts to freeze: stem,layer1,...", "PARTS")
    )
    freeze_backbone: bool = field(default=False, metadata=_help("train only the classifier"))
    backbone_lr_scale: float = field(
        default=1.0, metadata=_help("learning rate of the backbone = S x lr (the head gets lr)", "S")
    )

    # -- machine
    seed: int = field(default=0, metadata=_help("random seed (data order, augmentation, init)"))
    device: str = field(
        default="auto", metadata=_help("where to train: auto, cpu, cuda or cuda:N (default: auto)")
    )
    # auto: bf16 on CUDA; on the CPU fp32 (bf16 only where forced: see reslab.precision) | bf16 | off
    amp: str = "auto"
    channels_last: Any = "auto"  # auto (on for cuda and for cpu) | true | false
    # false | true (= default) | default | reduce-overhead (CUDA graphs) | max-autotune[-no-cudagraphs]
    compile: Any = False
    cudnn_benchmark: Any = "auto"  # auto (on for CUDA unless deterministic) | true | false
    sync_bn: bool = field(
        default=False,
        metadata=_help(
            "under torchrun on CUDA: BN statistics over the global batch (SyncBatchNorm); see docs/distributed.md"
        ),
    )
    dist_timeout: float = 30.0  # torchrun runs: minutes a collective may wait for the other ranks
    threads: int | None = None  # torch CPU threads (None: torch's default)
    deterministic: bool = False

    # -- bookkeeping
    eval_every: int | None = None  # iterations between evaluations; None: once per epoch; 0: only at end
    eval_test: bool = True  # also report test error (never used for model selection)
    eval_batch_size: int | None = None  # None (auto): 256 on CPU (cache-sized), 1024 on CUDA
    eval_subset: int | None = None  # evaluate on the first N val/test images only (quick runs); None: all
    log_every: int = 50  # iterations between train_log.csv rows (and host syncs)
    checkpoint_every: int = 1000  # iterations between checkpoints (also at every evaluation)
    tensorboard: bool = True  # when tensorboard is importable

    # ------------------------------------------------------------------------------------------ api

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> TrainConfig:
        cfg = cls()
        cfg.update(d, source=source)
        return cfg

    def update(self, d: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Set fields from a mapping (type-checked); an unknown key names the closest valid ones."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of config keys, got {type(d).__name__}")
        for key, value in d.items():
            set_field(self, str(key), value, source=source)
        return self

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (setting ``epochs`` clears ``iterations`` and vice versa)."""
        new = copy.deepcopy(self)
        return apply_overrides(new, changes, source="override")

    def validate(self) -> TrainConfig:
        """Check every value; returns self. Errors are one line naming the key. (Long on purpose: one
        check per field, in field order, so a reader finds a field's rule in one place.)"""
        _choice("task", self.task, TASK_NAMES)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("warmup_mode", self.warmup_mode, WARMUP_MODES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("amp", self.amp, AMP_MODES)
        _choice("channels_last", self.channels_last, AUTO_BOOL)
        _choice("cudnn_benchmark", self.cudnn_benchmark, AUTO_BOOL)
        _choice("optimizer_impl", self.optimizer_impl, OPTIMIZER_IMPLS)
        _choice("compile", self.compile, COMPILE_MODES)
        dev = str(self.device)
        if dev not in DEVICES and not (dev.startswith("cuda:") and dev[5:].isdigit()):
            raise ConfigError(f"device must be one of auto, cpu, cuda, cuda:N; got {dev!r}")
        if not self.model:
            raise ConfigError("model must be set")
        if (self.iterations is None) == (self.epochs is None):
            raise ConfigError("set exactly one of iterations and epochs (the training budget)")
        if self.iterations is not None:
            _positive("iterations", self.iterations)
        if self.epochs is not None:
            _positive("epochs", self.epochs)
        _positive("lr", self.lr)
        _positive("batch_size", self.batch_size)
        if self.eval_batch_size is not None:
            _positive("eval_batch_size", self.eval_batch_size)
        _positive("log_every", self.log_every)
        _positive("checkpoint_every", self.checkpoint_every)
        _positive("backbone_lr_scale", self.backbone_lr_scale, allow_zero=True)
        _positive("gamma", self.gamma)
        _positive("dist_timeout", self.dist_timeout)
        for key in (
            "weight_decay",
            "min_lr",
            "warmup_factor",
            "grad_clip",
            "pad",
            "cutout",
            "warmup_iters",
        ):
            _positive(key, getattr(self, key), allow_zero=True)
        _positive("val_split", self.val_split, allow_zero=True)
        if isinstance(self.val_split, float) and not (self.val_split.is_integer() or self.val_split < 1):
            raise ConfigError(
                f"val_split must be a count of images or a fraction in (0, 1), got {self.val_split}"
            )
        if self.eval_every is not None:
            _positive("eval_every", self.eval_every, allow_zero=True)
        if self.subset is not None:
            _positive("subset", self.subset)
        if self.eval_subset is not None:
            _positive("eval_subset", self.eval_subset)
        if self.num_classes is not None:
            _positive("num_classes", self.num_classes)
        if self.threads is not None:
            _positive("threads", self.threads)
        for key in ("momentum", "label_smoothing", "ema_decay"):
            v = getattr(self, key)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"{key} must be in [0, 1), got {v}")
        if self.data_kwargs and self.dataset != "synthetic":
            raise ConfigError(f"data_kwargs apply to the synthetic data set only, not {self.dataset}")
        _check_data_kwargs(self.data_kwargs)
        if self.cutout and self.dataset == "imagefolder":
            raise ConfigError(
                "cutout applies to the in-memory data sets; imagefolder uses ImageNet's augmentation"
            )
        if self.init_from == "torchvision":  # the name only: the file is looked up when training starts
            from reslab.models.hub import torchvision_url

            torchvision_url(self.model)
        elif self.init_from == "akamaster":
            from reslab.models.convert import akamaster_url

            akamaster_url(self.model)
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        ms = list(self.milestones)
        if any(m <= 0 for m in ms) or ms != sorted(ms):
            raise ConfigError(f"milestones must be positive and increasing, got {ms}")
        if self.schedule == "step" and ms:
            budget = self.iterations if self.iterations is not None else self.epochs
            if ms[-1] >= budget:  # type: ignore[operator]
                unit = "iterations" if self.iterations is not None else "epochs"
                raise ConfigError(f"milestone {ms[-1]} is not before the end of training ({budget} {unit})")
        return self


# ----------------------------------------------------------------------------------- field setting

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def field_names() -> list[str]:
    return list(_FIELDS)


def config_fields() -> dict[str, dataclasses.Field]:
    """Every :class:`TrainConfig` field by name (``.metadata["help"]``: the command line's help text)."""
    return dict(_FIELDS)


def _unknown(key: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_FIELDS), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(_FIELDS)}"
    return ConfigError(f"{source}: unknown config key {key!r}{hint}")


def set_field(cfg: TrainConfig, key: str, value: Any, *, source: str = "config") -> None:
    """``cfg.key = value`` with type coercion; ``a.b`` sets key ``b`` of dict field ``a``."""
    if "." in key:
        head, sub = key.split(".", 1)
        if head not in _FIELDS:
            raise _unknown(head, source)
        current = getattr(cfg, head)
        if not isinstance(current, dict):
            raise ConfigError(f"{source}: {head!r} is not a mapping, cannot set {key!r}")
        current = dict(current)
        current[sub] = value
        setattr(cfg, head, current)
        return
    if key not in _FIELDS:
        raise _unknown(key, source)
    setattr(cfg, key, _coerce(key, _HINTS[key], value, source))


_BOOL_OR_WORD = {  # fields typed Any: a bool or one of these words
    "channels_last": ("auto",),
    "cudnn_benchmark": ("auto",),
    "compile": tuple(m for m in COMPILE_MODES if isinstance(m, str)),
}


def _coerce(key: str, hint: Any, value: Any, source: str) -> Any:
    """``value`` as field ``key`` of type ``hint`` holds it (``--set`` gives strings, YAML gives scalars).
    One branch per annotated type, kept in one function so the whole coercion table reads in one place."""

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{source}: {key} must be {what}, got {value!r}")

    if key in _BOOL_OR_WORD:  # a bool (also spelled "true"/"false") or one of the key's words
        words = _BOOL_OR_WORD[key]
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if isinstance(value, bool) or (isinstance(value, str) and value in words):
            return value
        raise bad("auto, true or false" if words == ("auto",) else ", ".join(("false", "true", *words)))
    if key == "eval_batch_size" and isinstance(value, str) and value.lower() == "auto":
        return None
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise bad("true or false")
    if origin is int:
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                raise bad("an integer") from None
            if f.is_integer():
                return int(f)
        raise bad("an integer")
    if hint == (int | float):  # a count or a fraction (val_split)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        if isinstance(value, float) and value.is_integer() and value >= 1:
            return int(value)
        return value
    if origin is float:
        if isinstance(value, bool):
            raise bad("a number")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
        if not math.isfinite(f):
            raise bad("a finite number")
        return f
    if origin is str:
        if isinstance(value, bool):  # YAML read a documented word as a bool: amp: off
            word = _bool_word(key, value)
            if word is None:
                words = FIELD_WORDS.get(key)
                raise bad(f"one of {', '.join(map(str, words))}" if words else "a string")
            return word
        if isinstance(value, (str, int, float)):
            return str(value)
        raise bad("a string")
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        return [_coerce(key, item, v, source) if item is not Any else v for v in value]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise bad("a mapping")
        return dict(value)
    return value


def _bool_word(key: str, value: bool) -> str | None:
    """The documented word YAML turned into ``value`` (``off`` -> False), if the field has one."""
    spellings = ("on", "yes", "true") if value else ("off", "no", "false")
    words = FIELD_WORDS.get(key, ())
    return next((w for w in spellings if w in words), None)


def _check_data_kwargs(options: dict[str, Any]) -> None:
    """``data_kwargs`` of the synthetic data: known keys, a (C, H, W) shape, non-negative integers."""
    for key, value in options.items():
        if key not in SYNTHETIC_OPTIONS:
            raise ConfigError(
                f"data_kwargs: unknown option {key!r}; synthetic takes {', '.join(SYNTHETIC_OPTIONS)}"
            )
        if key == "shape":
            ok = isinstance(value, (list, tuple)) and len(value) == 3
            if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                raise ConfigError(f"data_kwargs.shape must be [C, H, W] of positive integers, got {value!r}")
        elif (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < (1 if key == "num_classes" else 0)
        ):
            raise ConfigError(
                f"data_kwargs.{key} must be a {'positive' if key == 'num_classes' else 'non-negative'} integer, got {value!r}"
            )


def _choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        names = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices)
        raise ConfigError(f"{key} must be one of {names}; got {value!r}")


def _positive(key: str, value: Any, allow_zero: bool = False) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key} must be {'non-negative' if allow_zero else 'positive'}, got {value}")


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], *, source: str = "override") -> TrainConfig:
    """Set fields; setting ``epochs`` clears ``iterations`` and vice versa (the budget is one of them)."""
    for key, value in overrides.items():
        if key == "epochs" and value is not None:
            cfg.iterations = None
        elif key == "iterations" and value is not None:
            cfg.epochs = None
        set_field(cfg, key, value, source=source)
    return cfg
