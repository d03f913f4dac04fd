"""The training configuration: one typed dataclass, the rules about its values, overrides as ``key=value``.

Beside the data they govern (one home per rule): each field's type (the words a field takes are its
``Literal`` annotation; :data:`FIELD_WORDS` is generated from them), the range of each number
(:data:`reslab.config_checks.NUMBER_RANGES`), the fields a resumed run may change (:data:`RESUME_KEYS`, :data:`MACHINE_KEYS`),
each command-line field's help text (field metadata, from which ``reslab train``'s flags are generated).
Recipes (YAML files) are read by :mod:`reslab.train.recipe`. The command line and the Python API override
any field afterwards (``--set key=value``, values parsed as YAML scalars or lists; ``model_kwargs.depth=56``
sets one key of a dict field), coerced to the field's annotation (:mod:`reslab.config_values`). Every
value is checked in :meth:`TrainConfig.validate`: an unknown key or a bad value is a
:class:`~reslab.errors.ConfigError` of one line naming the key (and the closest valid ones).

This module imports neither torch nor the data/model packages: building and checking a config is instant
(``init_from: torchvision``/``akamaster`` alone asks :mod:`reslab.models` whether the weights exist).
It sits at the bottom of the package graph (beside :mod:`reslab.errors`), so the tasks that read a config
(:mod:`reslab.tasks`) and the loop that trains it (:mod:`reslab.train`) share it without an arrow back up;
``task`` is therefore a plain name here, checked against :data:`reslab.tasks.TASKS` by its users.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from reslab.config_checks import DEVICES, check_relations
from reslab.config_values import (
    NONE_WORDS,
    check_type,
    coerce,
    literal_words,
    norm_value,
)
from reslab.errors import ConfigError

DEFAULT_RECIPE = "fashion_mnist"

# The words of the fields that take words: the annotation is the rule (coercion and validation read it).
OptimizerName = Literal["sgd", "adamw"]
ScheduleKind = Literal["step", "cosine", "linear", "constant"]
WarmupMode = Literal["linear", "constant"]
AmpMode = Literal["auto", "bf16", "off"]
OptimizerImpl = Literal["auto", "fused", "foreach", "loop"]
AutoBool = Literal["auto"] | bool
CompileMode = bool | Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
AlgoName = Literal["dqn", "ppo"]  # reinforcement learning: stable-baselines3's algorithms

SCHEDULES = typing.get_args(ScheduleKind)
WARMUP_MODES = typing.get_args(WarmupMode)
OPTIMIZERS = typing.get_args(OptimizerName)
AMP_MODES = typing.get_args(AmpMode)
AUTO_BOOL = literal_words(AutoBool)  # ("auto", False, True)
OPTIMIZER_IMPLS = typing.get_args(OptimizerImpl)
COMPILE_MODES = literal_words(CompileMode)  # (False, True, "default", ...)
DATASET_NAMES = ("fashion-mnist", "cifar10", "cifar100", "synthetic", "imagefolder", "medmnist")
# Other spellings of a field a user may type (``--set dataset_kwargs.flag=pathmnist``, as issue 35 wrote it).
FIELD_ALIASES = {"dataset_kwargs": "data_kwargs"}

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
    lists). A stored ``amp: auto`` meets a wanted ``off``/``bf16`` as the ``precision`` ``stored`` records
    (fp32/bf16: ``reslab.experiments.plan.stored_run_config`` adds it): ``auto`` differs by machine."""
    defaults = TrainConfig().to_dict()
    out = []
    for key, value in want.items():
        if key in ignore or (only is not None and key not in only):
            continue
        have = stored[key] if key in stored else defaults.get(key)
        if key == "amp" and have == "auto" and value != "auto":  # what an auto run computed in, if known
            have = {"fp32": "off", "bf16": "bf16"}.get(stored.get("precision"), have)
        if norm_value(have) != norm_value(value):
            out.append((key, have, value))
    return out


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
            "what to train: a task of the registry reslab.tasks.TASKS (classification by default; detection, "
            "segmentation, video, super-resolution, ...); without --recipe, the recipe named after the task "
            "(e.g. detection.yaml) is the starting point",
            "TASK",
        ),
    )
    # the task's own options (detection: arch, train_size, size, trainable_layers, ...; see docs/dense.md);
    # each task refuses a key it does not know
    task_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata=_help("options of the task, set one at a time: --set task_kwargs.arch=retinanet"),
    )
    # reinforcement learning (--task rl): the environment and stable-baselines3's algorithm
    env: str | None = field(
        default=None,
        metadata=_help(
            "--task rl: the gymnasium environment, e.g. MinAtar/Breakout-v1 or ALE/Breakout-v5", "ID"
        ),
    )
    algo: AlgoName | None = field(
        default=None, metadata=_help("--task rl: dqn or ppo (stable-baselines3)", "ALGO")
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
        default="fashion-mnist", metadata=_help(f"{', '.join(DATASET_NAMES)}; medmnist: docs/medical.md")
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
    # options of the data set; synthetic: shape [C, H, W], num_classes, train_size, test_size, seed;
    # medmnist: flag (pathmnist, chestmnist, ..., organmnist3d, ...), size (28; 64, 128, 224)
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
    optimizer: OptimizerName = "sgd"
    lr: float = field(default=0.1, metadata=_help("peak learning rate"))
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = field(default=1e-4, metadata=_help("L2 weight decay"))
    no_decay_bn_bias: bool = False  # exclude BN parameters and biases from weight decay
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # 0: off; else evaluate and export an EMA of the weights (e.g. 0.999)
    tta_flip: bool = False  # evaluate the mean softmax of each image and its mirror (flip-invariant data)
    grad_clip: float = 0.0  # 0: off; else clip the global gradient norm
    # the optimizer's kernels (same update rule, same math): auto = fused on CUDA, torch's default on CPU
    optimizer_impl: OptimizerImpl = "auto"

    # -- schedule
    schedule: ScheduleKind = "step"  # linear: decay to min_lr
    milestones: list[float] = field(default_factory=list)  # step: in the budget's unit
    gamma: float = 0.1  # step: multiply lr by this at each milestone
    min_lr: float = 0.0  # cosine/linear: final lr
    warmup_iters: int = 0
    warmup_mode: WarmupMode = "linear"  # linear: from warmup_factor*lr up to lr; constant: warmup_factor*lr
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
    device: str = field(  # one of DEVICES or cuda:N
        default="auto",
        metadata={**_help("where to train: auto, cpu, cuda or cuda:N (default: auto)"), "words": DEVICES},
    )
    # auto: bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32 (reslab.precision)
    amp: AmpMode = "auto"
    channels_last: AutoBool = "auto"  # auto: on for cuda and for cpu
    # true = default; reduce-overhead: CUDA graphs
    compile: CompileMode = False
    cudnn_benchmark: AutoBool = "auto"  # auto: on for CUDA unless deterministic
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
    # None (auto): 256 on CPU (cache-sized), 1024 on CUDA
    eval_batch_size: int | None = field(default=None, metadata={"none_words": ("auto",)})
    eval_subset: int | None = None  # evaluate on the first N val/test images only (quick runs); None: all
    log_every: int = 50  # iterations between train_log.csv rows (and host syncs)
    checkpoint_every: int = 1000  # iterations between checkpoints (also at every evaluation)
    # auto: tensorboard/ logs when tensorboard is importable; true: wanted (a warning where it is missing)
    tensorboard: AutoBool = "auto"

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
        """Check every value; returns self. Errors are one line naming the key. Every field against its
        annotation (:func:`~reslab.config_values.check_type`: a ``Literal`` field's words, ``X | None``,
        numbers that are numbers), every number against its range (:data:`reslab.config_checks.NUMBER_RANGES`), then the rules
        that relate fields. ``task`` is a name here; :data:`reslab.tasks.TASKS` knows which names exist,
        and each task checks its own ``task_kwargs``."""
        for name, hint in _HINTS.items():
            check_type(name, hint, getattr(self, name))
        check_relations(self)
        return self


# ----------------------------------------------------------------------------------- field setting

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def _documented_words(f: dataclasses.Field) -> tuple[Any, ...]:
    """The words field ``f`` takes as a user types them: its annotation's (``Literal``, with true/false
    where it also takes a bool), a str field's documented ``words``, the ``none_words`` it reads as None."""
    return literal_words(_HINTS[f.name]) + f.metadata.get("words", ()) + f.metadata.get("none_words", ())


# The words each field documents, as a user types them (``--set amp=off``); generated from the fields.
FIELD_WORDS: dict[str, tuple[Any, ...]] = {
    f.name: words for f in dataclasses.fields(TrainConfig) if (words := _documented_words(f))
}


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
    """``cfg.key = value``, coerced to the field's annotation (:func:`reslab.config_values.coerce`);
    ``a.b`` sets key ``b`` of dict field ``a``; a name of :data:`FIELD_ALIASES` sets its field."""
    head, dot, sub = key.partition(".")
    key = FIELD_ALIASES.get(head, head) + dot + sub
    if "." in key:
        head, sub = key.split(".", 1)
        if head not in _FIELDS:
            raise _unknown(head, source)
        current = getattr(cfg, head)
        if not isinstance(current, dict):
            raise ConfigError(f"{source}: {head!r} is not a mapping, cannot set {key!r}")
        setattr(cfg, head, {**current, sub: value})
        return
    if key not in _FIELDS:
        raise _unknown(key, source)
    none_words = NONE_WORDS + _FIELDS[key].metadata.get("none_words", ())
    setattr(cfg, key, coerce(key, _HINTS[key], value, source=source, none_words=none_words))


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], *, source: str = "override") -> TrainConfig:
    """Set fields; setting ``epochs`` clears ``iterations`` and vice versa (the budget is one of them)."""
    for key, value in overrides.items():
        if key == "epochs" and value is not None:
            cfg.iterations = None
        elif key == "iterations" and value is not None:
            cfg.epochs = None
        set_field(cfg, key, value, source=source)
    return cfg
