"""Detection and segmentation through the training loop: :class:`DenseTraining`, the
:class:`reslab.train.task.Task` adapter of :mod:`reslab.tasks.dense`, its resumable loader
:class:`SceneLoader`, and ``reslab eval`` of such a run (:func:`evaluate_dense_checkpoint`).

How a :class:`~reslab.train.config.TrainConfig` reads for these tasks (``task: detection`` or
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.data.loader import ResumableEpochs, epoch_seed
from reslab.data.scenes import SceneConfig, SceneDataset, Scenes
from reslab.errors import CheckpointError, ConfigError, first_line
from reslab.train.config import TrainConfig
from reslab.train.task import Runtime

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
class DenseOptions:
    """``cfg.task_kwargs`` of a dense run, checked and split: the scenes to draw, the head, its options."""

    task: str
    arch: str
    train_size: int
    test_size: int
    scene_seed: int
    scenes: SceneConfig
    model_kwargs: dict[str, Any]  # trainable_layers, frozen_bn and the head's options

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> DenseOptions:
        """Every key known, every value checked (one line naming the key otherwise)."""
        from reslab.models.dense import DENSE_TASKS
        from reslab.tasks.dense import TASKS

        if cfg.task not in DENSE_TASKS:
            raise ConfigError(f"not a detection / segmentation config: task {cfg.task!r}")
        kw = dict(cfg.task_kwargs)
        archs = TASKS[cfg.task].archs
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


def check_dense_config(cfg: TrainConfig) -> DenseOptions:
    """The checks a dense run passes before its data loads: the options, the settings it refuses, the
    backbone (a registered image network with stages) and the whole model, built on the meta device."""
    opts = DenseOptions.from_config(cfg)
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
            build_dense(opts, cfg, num_classes=11, in_chans=1, mean=[0.5], std=[0.5], init_from=None)
    return opts


def val_count(val_split: int | float, n: int) -> int:
    """Scenes ``val_split`` holds out of ``n``: a count, or a fraction of ``n``."""
    return (
        int(val_split)
        if isinstance(val_split, int) or float(val_split).is_integer()
        else round(val_split * n)
    )


def build_dense(
    opts: DenseOptions,
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


def load_splits(opts: DenseOptions, cfg: TrainConfig) -> tuple[SceneDataset, dict[str, Scenes]]:
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


class SceneLoader(ResumableEpochs):
    """Training batches of scenes, one epoch per ``iter()``, resumable exactly (the
    :class:`reslab.data.DeviceLoader` interface): epoch ``e`` visits a permutation drawn from
    ``(seed, e)`` with one horizontal flip draw per scene, so the stream is a function of the seed, the
    epoch and the position alone. ``batch_size`` is per rank; rank ``r`` of ``world`` takes positions
    ``r::world`` of the epoch's order (global batch ``i`` is the same scenes for any world size);
    incomplete global batches are dropped."""

    def __init__(
        self,
        make_batch: Callable[[torch.Tensor, torch.Tensor], Any],
        num_samples: int,
        batch_size: int,
        *,
        seed: int,
        augment: bool,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.make_batch = make_batch
        self.num_samples, self.batch_size, self.seed, self.augment = (
            num_samples,
            int(batch_size),
            int(seed),
            augment,
        )
        self.rank, self.world_size = (int(v) for v in shard)
        self.epoch, self.position = 0, 0
        if self.batch_size < 1 or len(self) == 0:
            raise ConfigError(
                f"{num_samples} training scenes give no batch of {batch_size} x {self.world_size} rank(s)"
            )
        self._plan_cache: tuple[int, tuple[torch.Tensor, torch.Tensor]] | None = None

    def __len__(self) -> int:
        return self.num_samples // (self.batch_size * self.world_size)

    def _plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (scene indices, flips) of ``epoch``."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        total = len(self) * self.batch_size * self.world_size
        order = torch.randperm(self.num_samples, generator=g)[:total]
        flips = torch.rand(total, generator=g) < 0.5 if self.augment else torch.zeros(total, dtype=torch.bool)
        sl = slice(self.rank, total, self.world_size)
        plan = (order[sl], flips[sl])
        self._plan_cache = (epoch, plan)
        return plan

    def _rollover(self) -> None:
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0

    def __iter__(self) -> Iterator[Any]:
        """The rest of the current epoch; then the epoch advances."""
        self._rollover()
        epoch = self.epoch
        order, flips = self._plan(epoch)
        while self.epoch == epoch and self.position < len(self):
            i = self.position
            self.position += 1  # consumed once handed out: a checkpoint after it skips it
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            yield self.make_batch(order[sl], flips[sl])
        if self.epoch == epoch:
            self._rollover()


class DenseTraining:
    """Detection or segmentation of ``cfg`` for the loop (:class:`reslab.train.task.Task`); checks the
    config, then loads the scenes, when made. See the module docstring."""

    higher_is_better = True
    counts_errors = False

    def __init__(self, cfg: TrainConfig, rt: Runtime) -> None:
        from reslab.tasks.dense import get_task

        self.opts = check_dense_config(cfg)
        self.rt = rt
        self.task = get_task(cfg.task)
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
        model = build_dense(
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


# ------------------------------------------------------------------------------------ reslab eval


def evaluate_dense_checkpoint(
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
    from reslab.tasks.dense import get_task

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
    opts = DenseOptions.from_config(cfg)
    data, scenes = load_splits(opts, cfg)
    dev = resolve_device(device)
    model = model.to(dev).float().eval()
    task = get_task(cfg.task)
    out_path = Path(out_dir) if out_dir else ckpt.parent
    if out_path.name == "checkpoints":
        out_path = out_path.parent
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
