"""Video and super-resolution training through the loop's task seam: :class:`LoaderTraining`.

It adapts a loader-driven :class:`reslab.tasks.base.Task` (``cfg.task``: ``"video"`` or
``"super-resolution"`` / ``"sr"``) to what :mod:`reslab.train.engine` asks of a task
(:mod:`reslab.train.task`); the tasks' own modules hold the data, the loaders, the losses and the metrics.
What the adapter decides:

- **options**: ``cfg.task_kwargs`` are the task's options: for video the clips (:class:`~reslab.data.video.
  ClipSpec` fields: ``frames``, ``size``, ``speeds``, ``train_clips``, ``test_clips``, ``seed``: which clips
  exist, not the run's seed); for super-resolution ``scale`` (default and only allowed value: the model's),
  ``patch`` (LR patch side, default 24), ``loss`` (``l1`` or ``mse``) and ``val_rows`` (default
  :data:`reslab.tasks.sr.VAL_ROWS`). ``cfg.augment`` switches the random crops (video, with ``cfg.pad``)
  or the flips and rotations (super-resolution); ``cfg.dataset`` is not read (the task names its data).
- **validation** (model selection never looks at the test set): video holds ``cfg.val_split`` training
  clips out (a count or a fraction, seeded by ``cfg.seed``, as for classification; without one, "best" is
  the lowest training error); super-resolution always holds out the bottom ``val_rows`` rows of each
  training photograph (:mod:`reslab.data.sr` says why), so ``val_rows=0`` is refused.
- **metrics** (``metric_names``, the first is the primary one): video ``error`` (top-1, percent),
  ``garment_error``, ``direction_error``, ``loss``: lower is better, and the step's wrong-prediction count is
  top-1 (``counts_errors``); super-resolution ``psnr``, ``ssim`` (on Y, the scale shaved) and the same for
  bicubic upsampling as a reference (``bicubic_psnr``, ``bicubic_ssim``): higher is better, and the step
  counts no errors.
- **ranks**: the training batches are sharded (global batch ``k`` is the same samples for every world
  size); video evaluates each rank's contiguous share of the clips and sums the counts over the ranks;
  super-resolution evaluates the few whole photographs on every rank alike (no communication).
- **precision**: the loss is computed in fp32 on the autocast output; video evaluates under the run's
  autocast, super-resolution in fp32 (PSNR is read off 8-bit output).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.train.classification import eval_arrays
from reslab.train.evaluate import autocast_ctx
from reslab.train.task import Runtime

VIDEO_METRICS = ("error", "garment_error", "direction_error", "loss")
SR_METRICS = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
DEFAULT_PATCH = 24  # LR pixels: SRResNet's 96-pixel HR crops at x4


@functools.lru_cache(maxsize=1)
def _clips(options: str, data_dir: str | None, download: bool) -> Any:
    """The clips of ``options`` (a :class:`ClipSpec` as JSON), cached in the process: a sweep of short runs
    (or a test) reads Fashion-MNIST and the clip cache once."""
    from reslab.data.video import load_moving_fashion
    from reslab.tasks import video

    return load_moving_fashion(video.clip_spec(**json.loads(options)), data_dir, download=download)


class LoaderTraining:
    """The video or super-resolution task of ``cfg`` (``cfg.task``); loads the data when made. See the
    module docstring; the members are those of :class:`reslab.train.task.Task` plus ``metric_names``,
    ``higher_is_better`` and ``counts_errors``."""

    loader: Any
    info: dict[str, Any]
    eval_splits: tuple[str, ...]
    selection: str
    metric_names: tuple[str, ...]
    higher_is_better: bool
    counts_errors: bool

    def __init__(self, cfg: Any, rt: Runtime) -> None:
        from reslab.tasks import LOADER_TASKS

        name = getattr(cfg, "task", None)
        if name not in LOADER_TASKS:
            raise ConfigError(f"LoaderTraining trains {', '.join(LOADER_TASKS)}, not task {name!r}")
        self.task = LOADER_TASKS[name]
        self.task.check_model(cfg.model)
        world = rt.dist.world_size
        if cfg.batch_size % world:
            raise ConfigError(f"batch_size {cfg.batch_size} is not a multiple of the {world} ranks")
        for key in ("subset", "cutout", "data_kwargs"):
            if getattr(cfg, key, None):
                raise ConfigError(f"{key} applies to the image data sets, not to task {self.task.name!r}")
        self.rt = rt
        self.batch_size = cfg.batch_size // world  # per rank: cfg.batch_size is global
        self.eval_batch_size = cfg.eval_batch_size or (256 if rt.device.type == "cuda" else 64)
        self.fixed_kwargs: dict[str, Any] = {}  # model arguments the data decides
        self._evals: dict[str, Callable[[nn.Module], dict[str, float]]] = {}
        options = dict(getattr(cfg, "task_kwargs", None) or {})
        if self.task.name == "video":
            self._video(cfg, options)
        else:
            self._super_resolution(cfg, options)
        self.eval_splits = tuple(s for s in ("val", "test") if s in self._evals)

    # ------------------------------------------------------------------------------ the seam

    def describe(self) -> str:
        i = self.info
        if self.task.name == "video":
            val = f", {i['num_val']} val" if i["num_val"] else ""
            size = "x".join(str(v) for v in i["input_size"])
            return f"{i['dataset']} ({i['num_train']} train{val}, {i['num_test']} test clips of {size})"
        return (
            f"{i['dataset']} x{i['scale']} (train {', '.join(i['train_images'])} in {i['patch']}-pixel "
            f"LR patches; val their bottom {i['val_rows']} rows; test {', '.join(i['test_images'])})"
        )

    def build_model(self, cfg: Any, *, init: bool) -> nn.Module:
        """``create_model(cfg.model, **cfg.model_kwargs)`` with the data's channels (and classes); a fresh
        run (``init``) loads ``cfg.init_from`` if set (a classifier of another size is replaced)."""
        from reslab.models import create_model
        from reslab.train.setup import load_init

        kwargs = dict(cfg.model_kwargs)
        for key, value in self.fixed_kwargs.items():
            if kwargs.get(key, value) != value:
                raise ConfigError(f"model_kwargs {key}={kwargs[key]} does not fit the data ({key} {value})")
            kwargs[key] = value
        model = create_model(cfg.model, **kwargs)
        if init and cfg.init_from:
            load_init(model, cfg.init_from, download=cfg.download)
            n = self.fixed_kwargs.get("num_classes")
            if n is not None and model.num_classes != n:  # type: ignore[attr-defined]
                model.reset_classifier(n)  # type: ignore[operator]
        return model

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, target = batch
        out = model(x)
        loss = self._loss(out.float(), target)
        with torch.no_grad():
            if self.counts_errors:
                errors = (out.argmax(1) != target).sum()
            else:
                errors = torch.zeros((), dtype=torch.long, device=target.device)
        return loss, errors, len(target)

    def evaluate(self, split: str, model: nn.Module) -> dict[str, float]:
        return self._evals[split](model)

    def select(self, metrics: dict[str, dict[str, float]], train_error: float) -> tuple[str, float]:
        """The validation split's primary metric (never the test split's); video without a validation
        split: the training error."""
        primary = self.metric_names[0]
        if "val" in metrics:
            return f"val_{primary}", metrics["val"][primary]
        return "train_error", train_error

    # ------------------------------------------------------------------------------ video

    def _video(self, cfg: Any, options: dict[str, Any]) -> None:
        from reslab.data import split_validation
        from reslab.tasks import video

        rt, dist = self.rt, self.rt.dist
        spec = dataclasses.asdict(video.clip_spec(**options))
        ds = _clips(json.dumps(spec, sort_keys=True), cfg.data_dir, cfg.download)
        ds = split_validation(ds, cfg.val_split, seed=cfg.seed) if cfg.val_split else ds
        if cfg.num_classes not in (None, ds.num_classes):
            raise ConfigError(f"num_classes={cfg.num_classes}, but the clips have {ds.num_classes} classes")
        self.metric_names, self.higher_is_better, self.counts_errors = VIDEO_METRICS, False, True
        self.fixed_kwargs = {"num_classes": ds.num_classes, "in_chans": ds.in_chans}
        self._loss = lambda out, y: nn.functional.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
        self.info = video.describe(ds) | {
            "task": "video",
            "num_classes": ds.num_classes,
            "flip": False,
            "num_train": len(ds.train_y),
            "num_val": 0 if ds.val_y is None else len(ds.val_y),
            "num_test": len(ds.test_y),
            "val_split": cfg.val_split,
            "split_seed": cfg.seed,
            "clip_spec": spec,
        }
        self.loader = video.train_loader(
            ds, self.batch_size, device=rt.device, seed=cfg.seed, pad=cfg.pad if cfg.augment else 0,
            drop_last=True, shard=(dist.rank, dist.world_size), channels_last=rt.channels_last,
        )  # fmt: skip
        self.selection = "val_error" if ds.val_y is not None else "train_error (no validation split)"
        for split, (x, y) in eval_arrays(ds, cfg, rt).items():
            self._evals[split] = self._video_eval(x, y, ds.mean, ds.std)

    def _video_eval(
        self, x: torch.Tensor, y: torch.Tensor, mean: Any, std: Any
    ) -> Callable[[nn.Module], dict[str, float]]:
        from reslab.tasks import video

        rt = self.rt

        def run(model: nn.Module) -> dict[str, float]:
            with autocast_ctx(rt.device, rt.amp_dtype):
                pred, loss = video.predict_clips(
                    model, x, y, mean=mean, std=std, device=rt.device, batch_size=self.eval_batch_size
                )
            sums = torch.cat([video.clip_counts(pred, y), torch.tensor([loss], dtype=torch.float64)])
            if rt.dist.enabled:
                sums = sums.to(rt.device)  # nccl: a device tensor
                torch.distributed.all_reduce(sums)
                sums = sums.cpu()
            s = video.clip_scores(sums[:4], float(sums[4]))
            return {
                "error": 100.0 - s["accuracy"],
                "garment_error": 100.0 - s["garment_accuracy"],
                "direction_error": 100.0 - s["direction_accuracy"],
                "loss": s["loss"],
            }

        return run

    # ------------------------------------------------------------------------------ super-resolution

    def _super_resolution(self, cfg: Any, options: dict[str, Any]) -> None:
        from reslab.models import create_model
        from reslab.tasks import sr

        rt, dist = self.rt, self.rt.dist
        unknown = sorted(set(options) - set(sr.OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown super-resolution option {unknown[0]!r}; choose from {', '.join(sr.OPTIONS)}"
            )
        for key in ("val_split", "num_classes", "label_smoothing"):
            if getattr(cfg, key, None):
                raise ConfigError(
                    f"{key} does not apply to super-resolution (validation: task_kwargs val_rows, "
                    f"default {sr.VAL_ROWS})"
                )
        with torch.device("meta"):
            scale = int(create_model(cfg.model, **cfg.model_kwargs).scale)  # type: ignore[attr-defined]
        if int(options.get("scale", scale)) != scale:
            raise ConfigError(f"scale {options['scale']} does not match {cfg.model} (x{scale})")
        patch, kind = int(options.get("patch", DEFAULT_PATCH)), str(options.get("loss", "l1"))
        val_rows = int(options.get("val_rows", sr.VAL_ROWS))
        if val_rows < scale:
            raise ConfigError(
                f"val_rows={val_rows}: super-resolution chooses checkpoints on a validation band of at least "
                f"{scale} rows (model selection must not use the test photographs)"
            )
        sr.sr_loss(torch.zeros(1), torch.zeros(1), kind)  # an unknown loss fails here, in one line
        data = sr.load_data(scale=scale, val_rows=val_rows)
        self.metric_names, self.higher_is_better, self.counts_errors = SR_METRICS, True, False
        self.fixed_kwargs = {"in_chans": data.in_chans}
        self._loss = lambda out, hr: sr.sr_loss(out, hr, kind)
        c = data.in_chans
        self.info = sr.describe(data) | {
            "task": "super-resolution",
            "val_rows": val_rows,
            "patch": patch,
            "loss": kind,
            "input_size": [c, patch, patch],
            "mean": [0.0] * c,  # the models take 0-1 images; EDSR subtracts its own mean inside
            "std": [1.0] * c,
            "classes": [],
        }
        self.loader = sr.train_loader(
            data, self.batch_size, device=rt.device, seed=cfg.seed, patch=patch, augment=cfg.augment,
            shard=(dist.rank, dist.world_size),
        )  # fmt: skip
        self.selection = (
            f"val_psnr (highest; validation: the bottom {val_rows} rows of each training photograph)"
        )
        for split in ("val", "test") if cfg.eval_test else ("val",):
            self._evals[split] = self._sr_eval(data, split)

    def _sr_eval(self, data: Any, split: str) -> Callable[[nn.Module], dict[str, float]]:
        from reslab.tasks import sr

        def run(model: nn.Module) -> dict[str, float]:
            r = sr.evaluate(model, data, device=self.rt.device, split=split)
            return {k: r[k] for k in SR_METRICS}

        return run
