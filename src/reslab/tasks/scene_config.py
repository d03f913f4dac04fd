"""The config of a detection / segmentation run: its ``task_kwargs`` checked and split
(:class:`SceneOptions`), the settings such a run refuses (:func:`check_scene_config`), its model built
(:func:`build_scene_model`) and its scenes drawn and split (:func:`load_splits`). See
:mod:`reslab.tasks.scenes` for how a config reads for these tasks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import torch
from torch import nn

from reslab.config import TrainConfig
from reslab.data.scenes import SceneConfig, SceneDataset, Scenes
from reslab.errors import ConfigError, first_line

SCENE_OPTIONS = (
    "train_size", "test_size", "scene_seed", "size", "min_objects", "max_objects", "min_scale", "max_scale",
)  # fmt: skip


_RCNN = (
    "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test",
    "rpn_batch_size_per_image", "box_batch_size_per_image", "box_detections_per_img", "box_score_thresh",
    "box_nms_thresh",
)  # fmt: skip


_FPN = ("fpn_channels", "anchor_sizes", "returned_layers")


# The head's options per architecture (keyword arguments of create_detector / create_segmenter and of
# torchvision's model), beside the freezing of the backbone, which every architecture takes.
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "fasterrcnn": (*_FPN, *_RCNN),
    "maskrcnn": (*_FPN, *_RCNN),
    "retinanet": (*_FPN, "score_thresh", "nms_thresh", "detections_per_img", "topk_candidates"),
    "deeplabv3": ("output_stride", "aux_loss", "atrous_rates"),
    "fcn": ("output_stride", "aux_loss"),
}


BACKBONE_OPTIONS = ("arch", "trainable_layers", "frozen_bn")


DEFAULT_SCENES = {"train_size": 4000, "test_size": 1000, "scene_seed": 0}


@dataclasses.dataclass(frozen=True)
class SceneOptions:
    """``cfg.task_kwargs`` of a dense run, checked and split: the scenes to draw, the head, its options;
    ``ops``: the task's model operations (a :class:`reslab.tasks.scenes.SceneOps` subclass)."""

    task: str
    ops: type
    arch: str
    train_size: int
    test_size: int
    scene_seed: int
    scenes: SceneConfig
    model_kwargs: dict[str, Any]  # trainable_layers, frozen_bn and the head's options

    @classmethod
    def from_config(cls, cfg: TrainConfig, ops: type) -> SceneOptions:
        """Every key known, every value checked (one line naming the key otherwise); ``ops``: the task's
        model operations (:class:`reslab.tasks.detection.DetectionTask`, ...)."""
        kw = dict(cfg.task_kwargs)
        archs = ops.archs
        arch = kw.pop("arch", archs[0])
        if arch not in archs:
            raise ConfigError(f"task_kwargs.arch: {cfg.task} takes {', '.join(archs)}, not {arch!r}")
        known = (*BACKBONE_OPTIONS, *SCENE_OPTIONS, *MODEL_OPTIONS[arch])
        for key in kw:
            if key not in known:
                raise ConfigError(
                    f"task_kwargs: unknown option {key!r} for {cfg.task} ({arch}); it takes {', '.join(known)}"
                )
        counts = {k: kw.pop(k, v) for k, v in DEFAULT_SCENES.items()}
        for k, v in counts.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == "scene_seed" else 1):
                raise ConfigError(
                    f"task_kwargs.{k} must be a {'non-negative' if k == 'scene_seed' else 'positive'} integer, got {v!r}"
                )
        geometry = {k: kw.pop(k) for k in SCENE_OPTIONS if k in kw}
        if "size" in geometry:  # the garments keep their share of the canvas unless given
            size = geometry["size"]
            if isinstance(size, int) and not isinstance(size, bool):
                geometry.setdefault("min_scale", max(8, round(20 * size / 128)))
                geometry.setdefault("max_scale", max(8, round(56 * size / 128)))
        for k, v in geometry.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"task_kwargs.{k} must be an integer, got {v!r}")
        scenes = SceneConfig(**geometry).validate()
        return cls(
            cfg.task, ops, arch, counts["train_size"], counts["test_size"], counts["scene_seed"], scenes, kw
        )


def check_scene_config(cfg: TrainConfig, ops: type) -> SceneOptions:
    """The checks a dense run passes before its data loads: the options, the settings it refuses, the
    backbone (a registered image network with stages) and the whole model, built on the meta device."""
    opts = SceneOptions.from_config(cfg, ops)
    refused = {
        "num_classes": (cfg.num_classes is not None, "the scenes fix the classes (10 garments + background)"),
        "subset": (cfg.subset is not None, "draw fewer scenes with --set task_kwargs.train_size=N"),
        "freeze": (bool(cfg.freeze), "freeze the backbone with --set task_kwargs.trainable_layers=N"),
        "freeze_backbone": (
            cfg.freeze_backbone,
            "freeze the backbone with --set task_kwargs.trainable_layers=0",
        ),
        "cutout": (cfg.cutout > 0, "the scenes are augmented by horizontal flips only"),
        "label_smoothing": (cfg.label_smoothing > 0, "the losses are torchvision's"),
    }
    for key, (bad, why) in refused.items():
        if bad:
            raise ConfigError(f"{key} does not apply to {cfg.task}: {why}")
    if cfg.dataset != "fashion-mnist":
        raise ConfigError(
            f"{cfg.task} draws its scenes from fashion-mnist; dataset {cfg.dataset!r} cannot be used"
        )
    if cfg.init_from in ("torchvision", "akamaster"):
        raise ConfigError(
            f"--init-from {cfg.init_from}: {cfg.task} takes a reslab classification run or checkpoint of "
            f"{cfg.model} on grey images (e.g. a fashion-mnist run)"
        )
    if not cfg.val_split:
        raise ConfigError(
            f"{cfg.task} picks checkpoints/best on held-out training scenes: set val_split (e.g. --val-split 200)"
        )
    n_val = val_count(cfg.val_split, opts.train_size)
    if not 1 <= n_val < opts.train_size:
        raise ConfigError(
            f"val_split={cfg.val_split} leaves no training scenes of task_kwargs.train_size={opts.train_size}"
        )
    from reslab.models.registry import get_entry

    kind = get_entry(cfg.model).task
    if kind != "image-classification":
        raise ConfigError(
            f"{cfg.task} needs an image backbone (a ResNet from `reslab models`); {cfg.model} is a {kind} model"
        )
    if cfg.init_from is None:  # with init_from the weights file decides; it is read when the model is built
        with torch.device("meta"):
            build_scene_model(opts, cfg, num_classes=11, in_chans=1, mean=[0.5], std=[0.5], init_from=None)
    return opts


def val_count(val_split: int | float, n: int) -> int:
    """Scenes ``val_split`` holds out of ``n``: a count, or a fraction of ``n``."""
    return (
        int(val_split)
        if isinstance(val_split, int) or float(val_split).is_integer()
        else round(val_split * n)
    )


def build_scene_model(
    opts: SceneOptions,
    cfg: TrainConfig,
    *,
    num_classes: int,
    in_chans: int,
    mean: list[float],
    std: list[float],
    init_from: str | None,
) -> nn.Module:
    """The detector / segmenter of ``opts`` on backbone ``cfg.model`` (``cfg.model_kwargs``); a bad option
    value is one line."""
    common = {
        "num_classes": num_classes,
        "in_chans": in_chans,
        "image_mean": mean,
        "image_std": std,
        "init_from": init_from,
        "backbone_kwargs": dict(cfg.model_kwargs) or None,
        **opts.model_kwargs,
    }
    try:
        return opts.ops.create(opts.arch, cfg.model, opts.scenes.size, **common)
    except (TypeError, ValueError, AssertionError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(
            f"task_kwargs / model_kwargs do not fit {opts.arch} on {cfg.model}: {first_line(e, 200)}"
        ) from None


@functools.lru_cache(maxsize=2)
def _scenes(train_size: int, test_size: int, seed: int, config: str, data_dir: str | None) -> SceneDataset:
    """:func:`reslab.data.scenes.load_scenes`, cached in the process (``config``: the SceneConfig as JSON)."""
    from reslab.data.scenes import load_scenes

    return load_scenes(
        train_size, test_size, seed=seed, config=SceneConfig(**json.loads(config)), data_dir=data_dir
    )


def load_splits(opts: SceneOptions, cfg: TrainConfig) -> tuple[SceneDataset, dict[str, Scenes]]:
    """The scenes of a run: ``(dataset, {"train", "val", "test"})``, the last ``val_split`` training scenes
    held out as ``val``."""
    data = _scenes(
        opts.train_size, opts.test_size, opts.scene_seed,
        json.dumps(dataclasses.asdict(opts.scenes), sort_keys=True), cfg.data_dir,
    )  # fmt: skip
    n = len(data.train)
    n_val = val_count(cfg.val_split, n)
    return data, {
        "train": data.train.slice(0, n - n_val),
        "val": data.train.slice(n - n_val, n),
        "test": data.test,
    }
