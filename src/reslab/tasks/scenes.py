"""What detection and segmentation share: the Fashion-MNIST scenes, behind the loop's seam.

:class:`SceneTraining` is the :class:`reslab.tasks.base.Task` of both (``reslab.tasks.detection.Detection``
and ``reslab.tasks.segmentation.Segmentation`` name their model operations, ``ops``); beside it the
operations both share (:class:`Batch`, :class:`SceneOps`: data, rebuild from a ``spec``), the config's
options (:class:`SceneOptions`) and ``reslab eval`` of such a run (:meth:`SceneTraining.evaluate_checkpoint`).
The training batches come from :class:`reslab.data.scenes.SceneLoader` (resumable).

How a :class:`~reslab.config.TrainConfig` reads for these tasks (``task: detection`` or
``segmentation``):

- ``model`` / ``model_kwargs``: the **backbone**, any registered image-classification network with
  stages (ImageNet-style ``resnet18`` ... or CIFAR-style ``resnet20`` ..., plain, pre-activation, ...);
  the head is ``task_kwargs.arch`` (detection: ``fasterrcnn`` | ``retinanet`` | ``maskrcnn``;
  segmentation: ``deeplabv3`` | ``fcn``), torchvision's, built by :mod:`reslab.models.dense`.
- ``task_kwargs`` (:data:`SCENE_OPTIONS`, :data:`MODEL_OPTIONS`; any other key is refused): the scenes
  (``train_size``, ``test_size``, ``scene_seed``, ``size``, ``min_objects``, ``max_objects``,
  ``min_scale``, ``max_scale``; with ``size`` alone the garment scales follow it, 20-56 px per 128), the
  freezing of the backbone (``trainable_layers``, ``frozen_bn``) and the head's options.
- ``dataset`` must be ``fashion-mnist`` (the scenes are drawn from it; ``data_dir`` finds it);
  ``val_split`` (required: it picks ``checkpoints/best``) holds the *last* N (or that fraction) of the
  ``train_size`` training scenes out; ``augment`` flips scenes horizontally (boxes and masks with them);
  ``init_from`` a reslab classification run or checkpoint for the backbone (a resumed run reads it again
  for the architecture; the weights come from the checkpoint); ``eval_subset`` evaluates the first N
  scenes of each split; ``eval_batch_size`` (auto: 16 detection, 32 segmentation).
- Refused, with the option that does it here: ``num_classes`` (the scenes fix them), ``subset``
  (``task_kwargs.train_size``), ``freeze`` / ``freeze_backbone`` (``task_kwargs.trainable_layers``),
  ``cutout``, ``label_smoothing`` (the losses are torchvision's), ``init_from: torchvision|akamaster``
  (3-channel or CIFAR weights; the scenes are grey).

The metrics (``metric_names``, higher is better, the first selects ``checkpoints/best`` on the validation
scenes): detection ``map_50``, ``map``, ``map_75``, ``mar_100`` (COCO, box; Mask R-CNN adds
``mask_map_50``, ``mask_map``), segmentation ``miou``, ``miou_fg``, ``pixel_acc``. The step counts no
wrong predictions (``counts_errors = False``). Every rank evaluates the whole split (mAP is no sum over
samples); the training batches are sharded by rank as :class:`reslab.data.DeviceLoader` shards them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from reslab.config import TrainConfig
from reslab.data.scenes import SceneConfig, SceneDataset, SceneLoader, Scenes, load_scenes
from reslab.errors import CheckpointError, ConfigError, first_line
from reslab.models.dense import DETECTORS, SEGMENTERS, build_from_spec, is_dense_spec
from reslab.models.weights import unwrap
from reslab.tasks.base import Runtime, eval_dir

ARCHS = {"detection": DETECTORS, "segmentation": SEGMENTERS}  # the heads each task builds


@dataclasses.dataclass
class Batch:
    """Images on the device and their targets: float (B, C, H, W) in [0, 1] (detection: the detector
    normalizes) or normalized (segmentation); targets a list of torchvision target dicts (detection) or
    a class map int64 (B, H, W) (segmentation)."""

    images: torch.Tensor
    targets: list[dict[str, torch.Tensor]] | torch.Tensor
    index: torch.Tensor


def spec_of(model: nn.Module) -> dict[str, Any]:
    """``model.spec`` of a dense model, also through DDP / ``torch.compile`` wrappers."""
    spec = getattr(unwrap(model), "spec", None)
    if not is_dense_spec(spec):
        raise ConfigError("not a detection / segmentation model of reslab.models.dense (it has no .spec)")
    return spec


# ten saturated, distinguishable colours, one per Fashion-MNIST class (Trubetskoy's "20 distinct colours")
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip


def _rgb(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) uint8 or [0, 1] float -> RGB uint8 (3, H, W) on the CPU (grey repeated)."""
    x = image.detach().cpu()
    if x.is_floating_point():
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ConfigError(f"expected an image (1 or 3, H, W), got {tuple(image.shape)}")
    return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x


def _flip_mask(
    n: int, augment: bool, generator: torch.Generator | None, flips: torch.Tensor | None = None
) -> torch.Tensor:
    if flips is not None:  # drawn by the caller (a training loader's plan)
        flips = torch.as_tensor(flips, dtype=torch.bool).reshape(-1).cpu()
        if len(flips) != n:
            raise ConfigError(f"flips holds {len(flips)} values for {n} scenes")
        return flips
    if not augment:
        return torch.zeros(n, dtype=torch.bool)
    return torch.rand(n, generator=generator) < 0.5


class SceneOps:
    """The model operations of a scene task (:mod:`reslab.tasks.detection`, :mod:`reslab.tasks.segmentation`):
    the data, rebuilding a model from its ``spec``; subclasses add build, batch, loss, predict, draw,
    evaluate."""

    name: ClassVar[str]
    archs: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]

    def load_data(
        self,
        train_size: int = 4000,
        test_size: int = 1000,
        *,
        seed: int = 0,
        config: SceneConfig | None = None,
        data_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> SceneDataset:
        """The Fashion-MNIST scenes (:func:`reslab.data.scenes.load_scenes`), the data of both tasks."""
        return load_scenes(
            train_size, test_size, seed=seed, config=config, data_dir=data_dir, cache_dir=cache_dir, **kwargs
        )

    def rebuild(self, spec: dict[str, Any]) -> nn.Module:
        """The model of ``spec`` (as ``model.spec`` / a checkpoint holds it), freshly initialized."""
        if spec.get("task") != self.name:
            raise ConfigError(f"the checkpoint is a {spec.get('task')} model, not {self.name}")
        return build_from_spec(spec)

    @staticmethod
    def _images(
        scenes: Scenes, index: torch.Tensor, flip: torch.Tensor, device: torch.device | str
    ) -> torch.Tensor:
        x = scenes.images[index].to(device, non_blocking=True).float().div_(255)
        if flip.any():
            x[flip.to(x.device)] = x[flip.to(x.device)].flip(-1)
        return x


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
DEFAULT_ARCH = {"detection": "fasterrcnn", "segmentation": "deeplabv3"}
DEFAULT_SCENES = {"train_size": 4000, "test_size": 1000, "scene_seed": 0}
METRICS = {
    "detection": ("map_50", "map", "map_75", "mar_100"),
    "segmentation": ("miou", "miou_fg", "pixel_acc"),
}
EVAL_BATCH = {"detection": 16, "segmentation": 32}
DATASET = "fashion-mnist-scenes"


@dataclasses.dataclass(frozen=True)
class SceneOptions:
    """``cfg.task_kwargs`` of a dense run, checked and split: the scenes to draw, the head, its options."""

    task: str
    arch: str
    train_size: int
    test_size: int
    scene_seed: int
    scenes: SceneConfig
    model_kwargs: dict[str, Any]  # trainable_layers, frozen_bn and the head's options

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> SceneOptions:
        """Every key known, every value checked (one line naming the key otherwise)."""
        if cfg.task not in ARCHS:
            raise ConfigError(f"not a detection / segmentation config: task {cfg.task!r}")
        kw = dict(cfg.task_kwargs)
        archs = ARCHS[cfg.task]
        arch = kw.pop("arch", DEFAULT_ARCH[cfg.task])
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
            cfg.task, arch, counts["train_size"], counts["test_size"], counts["scene_seed"], scenes, kw
        )


def check_scene_config(cfg: TrainConfig) -> SceneOptions:
    """The checks a dense run passes before its data loads: the options, the settings it refuses, the
    backbone (a registered image network with stages) and the whole model, built on the meta device."""
    opts = SceneOptions.from_config(cfg)
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
    from reslab.models.dense import create_detector, create_segmenter

    size = opts.scenes.size
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
        if opts.task == "detection":
            return create_detector(opts.arch, cfg.model, min_size=size, max_size=size, **common)
        return create_segmenter(opts.arch, cfg.model, image_size=size, **common)
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


class SceneTraining:
    """Detection or segmentation of ``cfg`` for the loop (:class:`reslab.tasks.base.Task`); checks the
    config, then loads the scenes, when made. A subclass names its model operations (``ops``). See the
    module docstring."""

    name: ClassVar[str]
    ops: ClassVar[type[SceneOps]]
    higher_is_better = True
    counts_errors = False
    loader: Any
    info: dict[str, Any]
    eval_splits: tuple[str, ...]
    selection: str
    metric_names: tuple[str, ...]

    def __init__(self, cfg: TrainConfig, rt: Runtime) -> None:
        self.opts = check_scene_config(cfg)
        self.rt = rt
        self.task = self.ops()
        self.metric_names = METRICS[cfg.task] + (
            ("mask_map_50", "mask_map") if self.opts.arch == "maskrcnn" else ()
        )
        self.selection = f"val_{self.metric_names[0]} (higher is better)"
        self.eval_batch_size = cfg.eval_batch_size or EVAL_BATCH[cfg.task]
        self.data, splits = load_splits(self.opts, cfg)
        self.train_scenes = splits["train"]
        self._evals = {"val": splits["val"], **({"test": splits["test"]} if cfg.eval_test else {})}
        if cfg.eval_subset:
            self._evals = {k: v.subset(min(cfg.eval_subset, len(v))) for k, v in self._evals.items()}
        self.eval_splits = tuple(self._evals)
        dist = rt.dist
        per_rank = cfg.batch_size // dist.world_size
        self.loader = SceneLoader(
            self._batch, len(self.train_scenes), per_rank, seed=cfg.seed, augment=cfg.augment,
            shard=(dist.rank, dist.world_size),
        )  # fmt: skip
        d, size = self.data, self.opts.scenes.size
        self.info: dict[str, Any] = {
            "task": cfg.task,
            "dataset": DATASET,
            "arch": self.opts.arch,
            "input_size": [d.in_chans, size, size],
            "mean": list(d.mean),
            "std": list(d.std),
            "classes": list(d.classes),
            "num_classes": d.num_classes,
            "flip": True,
            "num_train": len(self.train_scenes),
            "num_val": len(splits["val"]),
            "num_test": len(splits["test"]),
            "val_split": cfg.val_split,
            "scenes": {
                "train_size": self.opts.train_size,
                "test_size": self.opts.test_size,
                "seed": self.opts.scene_seed,
                "config": dataclasses.asdict(self.opts.scenes),
                "source": d.source,
            },
        }
        self.weights_metadata: dict[str, Any] = {}
        self._zero = torch.zeros((), device=rt.device)

    # ------------------------------------------------------------------------------ the seam

    def describe(self) -> str:
        i, s = self.info, self.opts.scenes.size
        return (
            f"Fashion-MNIST scenes {s}x{s} ({i['num_train']} train, {i['num_val']} val, {i['num_test']} test), "
            f"{self.opts.arch} {self.opts.task}"
        )

    def build_model(self, cfg: TrainConfig, *, init: bool) -> nn.Module:
        d = self.data
        model = build_scene_model(
            self.opts, cfg, num_classes=d.num_classes, in_chans=d.in_chans, mean=list(d.mean), std=list(d.std),
            init_from=cfg.init_from,  # a resume too: the file gives the backbone's architecture
        )  # fmt: skip
        self.weights_metadata = {"spec": model.spec}
        return model

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        loss, _ = self.task.loss(model, batch)
        return loss, self._zero, len(batch.index)

    def evaluate(self, split: str, model: nn.Module) -> dict[str, float]:
        m = self.task.evaluate(
            model, self._evals[split], device=self.rt.device, batch_size=self.eval_batch_size
        )
        return {k: float(m[k]) for k in self.metric_names}

    def select(self, metrics: dict[str, dict[str, float]], train_error: float | None) -> tuple[str, float]:
        primary = self.metric_names[0]
        return f"val_{primary}", metrics["val"][primary]

    # ------------------------------------------------------------------------------ data

    def _batch(self, index: torch.Tensor, flips: torch.Tensor) -> Any:
        if self.opts.task == "detection":
            masks = self.opts.arch == "maskrcnn"
            return self.task.batch(self.train_scenes, index, device=self.rt.device, flips=flips, masks=masks)  # type: ignore[call-arg]
        return self.task.batch(self.train_scenes, index, device=self.rt.device, flips=flips)

    @classmethod
    def evaluate_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        out_dir: str | os.PathLike | None = None,
        data_dir: str | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        splits: tuple[str, ...] = ("val", "test"),
    ) -> dict[str, Any]:
        """``reslab eval`` of a detection / segmentation run or checkpoint: the run's own scenes rebuilt from
        its config, every metric of the task and the per-class ones (detection: box AP and AP@.5 per class;
        segmentation: IoU per class), written to ``eval.json`` (in ``out_dir``, default the run directory)."""
        from reslab._device import resolve_device
        from reslab._io import write_json
        from reslab.models.dense import load_dense
        from reslab.models.weights import resolve_checkpoint

        ckpt = Path(resolve_checkpoint(path))
        model, meta = load_dense(ckpt)
        config = meta.get("config")
        if not isinstance(config, dict):
            raise CheckpointError(f"{ckpt} has no training config in its metadata; evaluate it in Python")
        cfg = TrainConfig.from_dict(
            {k: v for k, v in config.items() if k not in ("data", "precision")}, source=f"{ckpt} config"
        )
        if data_dir:
            cfg.data_dir = data_dir
        opts = SceneOptions.from_config(cfg)
        data, scenes = load_splits(opts, cfg)
        dev = resolve_device(device)
        model = model.to(dev).float().eval()
        task = cls.ops()
        out_path = eval_dir(ckpt, out_dir)
        results: dict[str, Any] = {"checkpoint": str(ckpt), "step": int(meta.get("step", -1)), "task": cfg.task,
                                   "arch": opts.arch, "backbone": cfg.model}  # fmt: skip
        bs = batch_size or EVAL_BATCH[cfg.task]
        names = data.classes
        for split in splits:
            if split not in scenes:
                continue
            if task.name == "detection":
                r = task.evaluate(model, scenes[split], device=dev, batch_size=bs, per_class=True)  # type: ignore[call-arg]
                per = {"ap_50": r.pop("ap_50"), "ap": r.pop("ap")}
                r["per_class"] = {
                    names[c]: {k: _num(v[c]) if c < len(v) else None for k, v in per.items()}
                    for c in range(1, len(names))
                }
            else:
                r = task.evaluate(model, scenes[split], device=dev, batch_size=bs)
                r["per_class"] = {names[c]: {"iou": _num(v)} for c, v in enumerate(r.pop("iou"))}
            r = {k: _num(v) if isinstance(v, float) else v for k, v in r.items()}
            r["n"] = len(scenes[split])
            results[split] = r
        write_json(out_path / "eval.json", results)
        results["eval_json"] = str(out_path / "eval.json")
        return results


def _num(v: float) -> float | None:
    """A metric for JSON: NaN (nothing to measure) as null."""
    return None if v is None or math.isnan(v) else round(float(v), 6)
