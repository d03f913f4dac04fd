"""Image classification, the task of every run today (:class:`reslab.train.task.Task`).

Data: the in-memory data sets (``fashion-mnist``, ``cifar10``, ``cifar100``, ``synthetic``) are held
on the device as uint8 and augmented there in batches (:class:`reslab.data.DeviceLoader`); an
``imagefolder`` is decoded by worker processes (:class:`reslab.train.folder.FolderLoader`). The step
is the cross-entropy (with ``label_smoothing``) of the logits in fp32; the metric is top-1 error
(``metric_names = ("error",)``, percent, lower is better).

Model selection (He et al. Sec. 4.2 hold out 5k of CIFAR's training images): ``checkpoints/best`` is the
evaluation with the lowest *validation* error when there is a validation split (``val_split``), else
the lowest training error over the evaluation interval. The test set is reported in ``metrics.csv`` but
never used to choose anything; for an ``imagefolder``, its ``val/`` folder is the reported (test) set, as
in the paper.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.train.config import TrainConfig
from reslab.train.distributed import reduce_error
from reslab.train.evaluate import evaluate, evaluate_batches
from reslab.train.setup import build_model
from reslab.train.task import Runtime


@functools.lru_cache(maxsize=2)
def _load_dataset(name: str, data_dir: str | None, download: bool, options: str) -> Any:
    """``load_dataset``, cached in the process: a sweep of many short runs reads the files once.
    ``options``: ``cfg.data_kwargs`` as JSON (hashable)."""
    import json

    from reslab.data import load_dataset

    return load_dataset(name, data_dir, download=download, **json.loads(options))


def load_training_data(cfg: TrainConfig) -> Any:
    """The in-memory data set of ``cfg`` (``dataset``, ``data_dir``, ``download``, ``data_kwargs``)."""
    import json

    return _load_dataset(cfg.dataset, cfg.data_dir, cfg.download, json.dumps(cfg.data_kwargs, sort_keys=True))


def eval_arrays(ds: Any, cfg: TrainConfig, rt: Runtime) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The evaluation splits of an in-memory data set ``ds`` (``val_x``/``val_y``, ``test_x``/``test_y``;
    ``val`` only if held out, ``test`` only with ``eval_test``): cut to ``eval_subset``, this rank's
    contiguous share (every sample counted once over the ranks, no padding), on the device once."""
    sets = {"val": (ds.val_x, ds.val_y), "test": (ds.test_x, ds.test_y) if cfg.eval_test else (None, None)}
    out = {}
    for split, (x, y) in sets.items():
        if x is None:
            continue
        x, y = x[: cfg.eval_subset], y[: cfg.eval_subset]
        if rt.dist.enabled:
            x, y = (torch.tensor_split(t, rt.dist.world_size)[rt.dist.rank] for t in (x, y))
        out[split] = (x.to(rt.device), y.to(rt.device))
    return out


class Classification:
    """The classification task of ``cfg``: loads the data (the training loader, the evaluation sets on
    the device) when made; see the module docstring."""

    metric_names = ("error",)
    higher_is_better = False
    counts_errors = True

    def __init__(self, cfg: TrainConfig, rt: Runtime) -> None:
        self.rt = rt
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.batch_size = cfg.batch_size // rt.dist.world_size  # per rank: cfg.batch_size is global
        self.eval_batch_size = cfg.eval_batch_size or (1024 if rt.device.type == "cuda" else 256)
        self._evals: dict[str, Callable[[nn.Module], float]] = {}
        if cfg.dataset == "imagefolder":
            self._folder_data(cfg)
        else:
            self._array_data(cfg)
        self.eval_splits = tuple(self._evals)
        self.selection = "val_error" if "val" in self._evals else "train_error (no validation split)"

    # ------------------------------------------------------------------------------ the seam

    def describe(self) -> str:
        i = self.info
        val = f", {i['num_val']} val" if i.get("num_val") else ""
        if isinstance(i.get("val_split"), float):  # a fraction: say what it came to for this data
            val += f" (val_split {i['val_split']:g} of {i['num_train'] + i['num_val']})"
        return f"{i['dataset']} ({i['num_train']} train{val}, {i['num_test']} test)"

    def build_model(self, cfg: TrainConfig, *, init: bool) -> nn.Module:
        return build_model(cfg, self.num_classes, self.in_chans, init=init)

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = batch
        out = model(x)
        loss = self.criterion(out.float(), y)
        with torch.no_grad():
            errors = (out.argmax(1) != y).sum()
        return loss, errors, len(y)

    def evaluate(self, split: str, model: nn.Module) -> dict[str, float]:
        return {"error": self._evals[split](model)}

    def select(self, metrics: dict[str, dict[str, float]], train_error: float | None) -> tuple[str, float]:
        if "val" in metrics:
            return "val_error", metrics["val"]["error"]
        return "train_error", float(train_error if train_error is not None else math.nan)

    # ------------------------------------------------------------------------------ data wiring

    def _array_data(self, cfg: TrainConfig) -> None:
        """An in-memory data set: subset, validation split, the device loader, the evaluation sets."""
        from reslab.data import DeviceLoader, split_validation, subset_dataset

        rt, dist = self.rt, self.rt.dist
        ds = load_training_data(cfg)
        if cfg.subset:
            ds = subset_dataset(ds, cfg.subset, seed=cfg.seed, stratified=True)
        if cfg.val_split:
            n = len(ds.train_y)
            if isinstance(cfg.val_split, int) and cfg.val_split >= n:
                raise ConfigError(
                    f"val_split={cfg.val_split} does not fit the {n} training images; hold out fewer, "
                    "or give a fraction (e.g. --val-split 0.1)"
                )
            ds = split_validation(ds, cfg.val_split, seed=cfg.seed)
        nc = cfg.num_classes or ds.num_classes
        if int(ds.train_y.max()) >= nc:
            raise ConfigError(f"num_classes={nc} but the data has labels up to {int(ds.train_y.max())}")
        self.num_classes, self.in_chans = nc, ds.in_chans
        self.info = {
            "task": "classification",
            "dataset": ds.name,
            "input_size": list(ds.input_size),
            "mean": list(ds.mean),
            "std": list(ds.std),
            "classes": list(ds.classes) if nc == ds.num_classes else [str(i) for i in range(nc)],
            "num_classes": nc,
            "flip": ds.flip,
            "num_train": len(ds.train_y),
            "num_val": 0 if ds.val_y is None else len(ds.val_y),
            "num_test": len(ds.test_y),
            "val_split": cfg.val_split,
        }
        self.loader = DeviceLoader(
            ds.train_x, ds.train_y, self.batch_size, device=rt.device, mean=ds.mean, std=ds.std,
            augment=cfg.augment, flip=ds.flip, pad=cfg.pad, cutout=cfg.cutout, seed=cfg.seed,
            drop_last=True, shard=(dist.rank, dist.world_size), channels_last=rt.channels_last,
        )  # fmt: skip
        for split, (x, y) in eval_arrays(ds, cfg, rt).items():
            run = functools.partial(
                evaluate, x=x, y=y, mean=ds.mean, std=ds.std, batch_size=self.eval_batch_size,
                device=rt.device, amp_dtype=rt.amp_dtype, channels_last=rt.channels_last, num_classes=nc,
            )  # fmt: skip
            self._evals[split] = lambda model, run=run: reduce_error(run(model), dist, rt.device)

    def _folder_data(self, cfg: TrainConfig) -> None:
        """An ImageNet-style folder: ``train/`` through worker processes, ``val/`` as the test set."""
        from reslab.data import IMAGENET_MEAN, IMAGENET_STD, make_imagefolder_loaders
        from reslab.train.folder import FolderLoader

        rt, dist, ebs = self.rt, self.rt.dist, self.eval_batch_size
        if not cfg.data_dir:
            raise ConfigError(
                "imagefolder needs --data-dir ROOT (with ROOT/train/<class>/ and ROOT/val/<class>/)"
            )
        loaders = make_imagefolder_loaders(
            cfg.data_dir,
            self.batch_size,
            cfg.workers,
            cfg.image_size,
            seed=cfg.seed,
            distributed=dist.enabled,
            val_batch_size=ebs,
            rank=dist.rank,
            world_size=dist.world_size,
        )  # fmt: skip  (val/ is sharded without duplicates; training uses FolderLoader's own shard)
        nc = cfg.num_classes or len(loaders.classes)
        self.num_classes, self.in_chans = nc, 3
        self.loader = FolderLoader(
            loaders.train.dataset, self.batch_size, device=rt.device, workers=cfg.workers, seed=cfg.seed,
            channels_last=rt.channels_last, shard=(dist.rank, dist.world_size),
        )  # fmt: skip
        n_batches = None if cfg.eval_subset is None else -(-cfg.eval_subset // (ebs * dist.world_size))

        def folder_eval(model: nn.Module) -> float:
            r = evaluate_batches(
                model, itertools.islice(loaders.val, n_batches), device=rt.device, amp_dtype=rt.amp_dtype,
                num_classes=nc, channels_last=rt.channels_last,
            )  # fmt: skip
            return reduce_error(r, dist, rt.device)

        self.info = {
            "task": "classification",
            "dataset": "imagefolder",
            "input_size": [3, cfg.image_size, cfg.image_size],
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "classes": list(loaders.classes) if nc == len(loaders.classes) else [str(i) for i in range(nc)],
            "num_classes": nc,
            "flip": True,
            "num_train": len(loaders.train.dataset),
            "num_val": 0,
            "num_test": len(loaders.val.dataset),
        }
        if cfg.eval_test:
            self._evals["test"] = folder_eval
