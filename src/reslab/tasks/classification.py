"""Image classification behind the loop's seam (:class:`reslab.tasks.base.Task`), and its evaluation.

Data: the in-memory data sets (``fashion-mnist``, ``cifar10``, ``cifar100``, ``synthetic``) are held
on the device as uint8 and augmented there in batches (:class:`reslab.data.DeviceLoader`); an
``imagefolder`` is decoded by worker processes (:class:`reslab.data.folder.FolderLoader`). The step
is the cross-entropy (with ``label_smoothing``) of the logits in fp32; the metric is top-1 error
(``metric_names = ("error",)``, percent, lower is better).

Model selection (He et al. Sec. 4.2 hold out 5k of CIFAR's training images): ``checkpoints/best`` is the
evaluation with the lowest *validation* error when there is a validation split (``val_split``), else
the lowest training error over the evaluation interval. The test set is reported in ``metrics.csv`` but
never used to choose anything; for an ``imagefolder``, its ``val/`` folder is the reported (test) set, as
in the paper.

Evaluation: top-1/top-5 error, loss, confusion matrix, per-class accuracy. :func:`evaluate` runs a model
over every sample of an evaluation set once (no augmentation, batches made on the device by
:func:`reslab.data.iterate_eval`), summing on the device and syncing once at the end.
:func:`evaluate_checkpoint` is ``reslab eval``: it rebuilds the model and the data preprocessing from the
checkpoint's stored config and writes ``eval.json`` and a confusion-matrix PNG.

MedMNIST (``dataset: medmnist``, ``data_kwargs.flag``; :mod:`reslab.data.medmnist`, 2D flags): the
official validation split is the validation set (a recipe's ``val_split`` is not applied; the first
progress line says so); multi-label data (ChestMNIST) trains with the binary cross-entropy per label; the
metrics are ``error`` and ``auc`` and ``reslab eval`` reports the benchmark's AUC and ACC
(:mod:`reslab.tasks.medical`). Every rank evaluates the whole split there (AUC is no sum over shards).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.config import TrainConfig
from reslab.data.medmnist import describe_medmnist
from reslab.errors import CheckpointError, ConfigError
from reslab.tasks import medical
from reslab.tasks.base import (
    EvalRequest,
    PredictRequest,
    Refusals,
    Runtime,
    Sample,
    build_model,
    eval_arrays,
    eval_dir,
    reduce_error,
    run_config,
)
from reslab.tasks.classify_files import ClassifierEmbedder, ClassifierFiles
from reslab.tasks.metrics import evaluate, evaluate_batches


@functools.lru_cache(maxsize=2)
def _load_dataset(name: str, data_dir: str | None, download: bool, options: str) -> Any:
    """``load_dataset`` (``load_medmnist`` for ``medmnist``), cached in the process: a sweep of many short
    runs reads the files once. ``options``: ``cfg.data_kwargs`` as JSON (hashable)."""

    from reslab.data import load_dataset, load_medmnist

    if name == "medmnist":
        ds = load_medmnist(data_dir=data_dir, download=download, **json.loads(options))
        if ds.train_x.ndim == 5:
            raise ConfigError(
                f"{json.loads(options)['flag']} holds 3D volumes: train it with --task video and a 3D network "
                "(r3d_18, mc3_18, r2plus1d_18, resnet3d_18, ...)"
            )
        return ds
    return load_dataset(name, data_dir, download=download, **json.loads(options))


def load_training_data(cfg: TrainConfig) -> Any:
    """The in-memory data set of ``cfg`` (``dataset``, ``data_dir``, ``download``, ``data_kwargs``)."""

    return _load_dataset(cfg.dataset, cfg.data_dir, cfg.download, json.dumps(cfg.data_kwargs, sort_keys=True))


class Classification(Refusals):
    """The classification task of ``cfg``: loads the data (the training loader, the evaluation sets on
    the device) when made; see the module docstring."""

    name = "classification"
    recipe = "fashion_mnist"
    metric_names = ("error",)
    higher_is_better = False
    counts_errors = True
    loader: Any
    info: dict[str, Any]
    eval_splits: tuple[str, ...]
    selection: str

    def __init__(self, cfg: TrainConfig, rt: Runtime) -> None:
        self.rt = rt
        self.metric_names = type(self).metric_names
        self.objective = medical.Objective(0, label_smoothing=cfg.label_smoothing)  # set by the data
        self.batch_size = cfg.batch_size // rt.dist.world_size  # per rank: cfg.batch_size is global
        self.eval_batch_size = cfg.eval_batch_size or (1024 if rt.device.type == "cuda" else 256)
        self._evals: dict[str, Callable[[nn.Module], dict[str, float]]] = {}
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
        if "medmnist" in i:
            m = i["medmnist"]
            val += f" (the official validation split), {m['flag']} {m['size']}px, {m['task']}"
        return f"{i['dataset']} ({i['num_train']} train{val}, {i['num_test']} test)"

    def build_model(self, cfg: TrainConfig, *, init: bool) -> nn.Module:
        return build_model(cfg, self.num_classes, self.in_chans, init=init)

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = batch
        out = model(x)
        loss = self.objective.loss(out.float(), y)
        with torch.no_grad():
            errors = self.objective.errors(out, y)
        return loss, errors, len(y)

    def evaluate(self, split: str, model: nn.Module) -> dict[str, float]:
        return self._evals[split](model)

    def select(self, metrics: dict[str, dict[str, float]], train_error: float | None) -> tuple[str, float]:
        if "val" in metrics:
            return "val_error", metrics["val"]["error"]
        return "train_error", float(train_error if train_error is not None else math.nan)

    # ------------------------------------------------------------------------------ a trained classifier

    @classmethod
    def evaluate_checkpoint(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        return evaluate_checkpoint(
            checkpoint, out_dir=request.out_dir, data_dir=request.data_dir, device=request.device,
            batch_size=request.batch_size or 256, tta=request.tta, splits=request.splits,
        )  # fmt: skip

    @classmethod
    def evaluation_lines(cls, result: dict[str, Any]) -> list[str]:
        if "medmnist" in result:
            return medical.evaluation_lines(result)
        lines = [f"checkpoint: {result['checkpoint']} (step {result['step']})"]
        if result.get("convention"):
            lines.append(f"convention: {result['convention']}")
        for split in ("val", "test"):
            if split in result:
                s = result[split]
                lines.append(f"{split}: top-1 error {s['top1_error']:.2f}%  top-5 error {s['top5_error']:.2f}%  "
                             f"loss {s['loss']:.4f}  ({s['n']} images)")  # fmt: skip
                lines += [f"  {name:>16s}  {acc:6.2f}%" for name, acc in s["per_class_accuracy"].items()]
                lines.append(f"  confusion matrix: {s['confusion_png']}")
        return [*lines, f"results: {result['eval_json']}"]

    @classmethod
    def predictor(cls, checkpoint: str, request: PredictRequest) -> ClassifierFiles:
        return ClassifierFiles(checkpoint, request)

    @classmethod
    def embedder(cls, checkpoint: str, request: PredictRequest) -> ClassifierEmbedder:
        return ClassifierEmbedder(checkpoint, request)

    @classmethod
    def sample_input(cls, cfg: TrainConfig, index: int) -> Sample:
        """Test image ``index`` of ``cfg``'s in-memory data set (an image folder holds the user's own)."""
        if cfg.dataset == "imagefolder":
            raise ConfigError("an imagefolder run predicts your own images: give one of its val/ files")
        ds = load_training_data(cfg)
        x = ds.test_x[Sample.check(index, len(ds.test_x), "test images")].numpy()
        y = int(ds.test_y[index])
        found = [c for j, c in enumerate(ds.classes) if y >> j & 1] if ds.multi_label else [ds.classes[y]]
        label = ", ".join(found) or "no finding"
        return Sample(
            x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0), f"test image {index} of {ds.name}: {label}"
        )

    # ------------------------------------------------------------------------------ data wiring

    def _array_data(self, cfg: TrainConfig) -> None:
        """An in-memory data set: subset, validation split, the device loader, the evaluation sets."""
        from reslab.data import DeviceLoader, split_validation, subset_dataset

        rt, dist = self.rt, self.rt.dist
        ds = load_training_data(cfg)
        if cfg.subset:
            ds = subset_dataset(ds, cfg.subset, seed=cfg.seed, stratified=True)
        if cfg.val_split and ds.val_x is None:  # MedMNIST brings its official validation split
            n = len(ds.train_y)
            if isinstance(cfg.val_split, int) and cfg.val_split >= n:
                raise ConfigError(
                    f"val_split={cfg.val_split} does not fit the {n} training images; hold out fewer, "
                    "or give a fraction (e.g. --val-split 0.1)"
                )
            ds = split_validation(ds, cfg.val_split, seed=cfg.seed)
        nc = cfg.num_classes or ds.num_classes
        if ds.multi_label and nc != ds.num_classes:
            raise ConfigError(f"num_classes={nc}, but the data has {ds.num_classes} labels (one logit each)")
        if not ds.multi_label and int(ds.train_y.max()) >= nc:
            raise ConfigError(f"num_classes={nc} but the data has labels up to {int(ds.train_y.max())}")
        self.num_classes, self.in_chans = nc, ds.in_chans
        self.objective = medical.Objective(
            nc, multi_label=ds.multi_label, label_smoothing=cfg.label_smoothing
        )
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
        if ds.name == "medmnist":
            self.info |= {"medmnist": describe_medmnist(**cfg.data_kwargs), "multi_label": ds.multi_label}
            self.info["val_split"] = 0  # the official one
        self.loader = DeviceLoader(
            ds.train_x, ds.train_y, self.batch_size, device=rt.device, mean=ds.mean, std=ds.std,
            augment=cfg.augment, flip=ds.flip, pad=cfg.pad, cutout=cfg.cutout, seed=cfg.seed,
            drop_last=True, shard=(dist.rank, dist.world_size), channels_last=rt.channels_last,
        )  # fmt: skip
        self._array_evals(ds, cfg, nc)

    def _array_evals(self, ds: Any, cfg: TrainConfig, nc: int) -> None:
        """One evaluation per split: the top-1 error (summed over the ranks' shards), or on MedMNIST the
        error and AUC of the whole split (:mod:`reslab.tasks.medical`)."""
        from reslab.data import iterate_eval

        rt, dist, ebs = self.rt, self.rt.dist, self.eval_batch_size
        if ds.name != "medmnist":
            for split, (x, y) in eval_arrays(ds, cfg, rt).items():
                run = functools.partial(
                    evaluate, x=x, y=y, mean=ds.mean, std=ds.std, batch_size=ebs, device=rt.device,
                    amp_dtype=rt.amp_dtype, channels_last=rt.channels_last, num_classes=nc,
                    tta_flip=cfg.tta_flip and ds.flip,
                )  # fmt: skip
                self._evals[split] = lambda model, run=run: {
                    "error": reduce_error(run(model), dist, rt.device)
                }
            return
        self.metric_names = medical.METRICS
        batches = functools.partial(iterate_eval, batch_size=ebs, device=rt.device, mean=ds.mean, std=ds.std,
                                    channels_last=rt.channels_last)  # fmt: skip
        for split in ("val", "test") if cfg.eval_test else ("val",):
            x, y = (getattr(ds, f"{split}_{k}")[: cfg.eval_subset].to(rt.device) for k in "xy")
            self._evals[split] = medical.scorer(x, y, batches, self.objective, rt.device, rt.amp_dtype)

    def _folder_data(self, cfg: TrainConfig) -> None:
        """An ImageNet-style folder: ``train/`` through worker processes, ``val/`` as the test set."""
        from reslab.data import IMAGENET_MEAN, IMAGENET_STD, make_imagefolder_loaders
        from reslab.data.folder import FolderLoader

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
                num_classes=nc, channels_last=rt.channels_last, tta_flip=cfg.tta_flip,
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
            self._evals["test"] = lambda model: {"error": folder_eval(model)}


# -------------------------------------------------------------------------------------- reslab eval


def _rebuild_data(config: dict[str, Any], data_dir: str | None):
    from reslab.data import load_dataset, load_medmnist, split_validation, subset_dataset

    name = config.get("dataset")
    if not name:
        raise CheckpointError(
            "the checkpoint's metadata has no training config (dataset); cannot rebuild data"
        )
    if name == "imagefolder":
        raise ConfigError("reslab eval of imagefolder runs is not supported yet; evaluate in Python")
    if name == "medmnist":
        ds = load_medmnist(data_dir=data_dir or config.get("data_dir"), **config.get("data_kwargs", {}))
    else:
        ds = load_dataset(name, data_dir or config.get("data_dir"), download=False)
    if config.get("subset"):
        ds = subset_dataset(ds, int(config["subset"]), seed=int(config.get("seed", 0)), stratified=True)
    if config.get("val_split") and ds.val_x is None:
        ds = split_validation(ds, config["val_split"], seed=int(config.get("seed", 0)))
    return ds


def evaluate_checkpoint(
    path: str,
    *,
    out_dir: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    tta: str | None = None,
    splits: tuple[str, ...] = ("val", "test"),
) -> dict[str, Any]:
    """``reslab eval``: errors, per-class accuracy and a confusion-matrix PNG of a run or checkpoint."""
    from reslab._device import resolve_device
    from reslab._io import write_json
    from reslab.data import iterate_eval
    from reslab.models.weights import load_model, resolve_checkpoint
    from reslab.precision import precision_name, recorded_amp
    from reslab.tasks.metrics import plot_confusion

    if tta not in (None, "none", "flip"):
        raise ConfigError(f"--tta must be flip or none, got {tta!r}")
    ckpt = Path(resolve_checkpoint(path))
    model, meta = load_model(ckpt)
    config, data_info = run_config(meta)
    ds = _rebuild_data(config, data_dir)
    mean, std = data_info.get("mean", ds.mean), data_info.get("std", ds.std)
    classes = list(data_info.get("classes", ds.classes))
    dev = resolve_device(device)
    model = model.to(dev).float().eval()
    out_path = eval_dir(ckpt, out_dir)
    # the run's own precision, as its weights record it (older runs: its amp resolved here; precision.py)
    amp_dtype = recorded_amp(config, dev)
    results: dict[str, Any] = {"checkpoint": str(ckpt), "step": int(meta.get("step", -1)),
                               "tta": tta or "none", "precision": precision_name(amp_dtype)}  # fmt: skip
    if meta.get("convention"):  # a foreign checkpoint: how it was read
        results["convention"] = meta["convention"]
    if "medmnist" in data_info:  # the benchmark's AUC and ACC instead (reslab.tasks.medical)
        medical.refuse_tta(tta)
        batches = functools.partial(iterate_eval, batch_size=batch_size, device=dev, mean=mean, std=std)
        results |= medical.evaluate_sets(model, ds, splits, batches, data_info, dev, amp_dtype, out_path)
        splits = ()
    for split in splits:
        x = getattr(ds, f"{split}_x", None)
        if x is None:
            continue
        y = getattr(ds, f"{split}_y")
        r = evaluate(
            model, x, y, mean=mean, std=std, batch_size=batch_size, device=dev, amp_dtype=amp_dtype,
            num_classes=len(classes), tta_flip=(tta == "flip"), confusion=True,
        )  # fmt: skip
        cm = r.pop("confusion")
        per_class = (cm.diag().double() / cm.sum(1).clamp_min(1).double() * 100).tolist()
        r["per_class_accuracy"] = dict(zip(classes, [round(a, 3) for a in per_class]))
        r["confusion_matrix"] = cm.tolist()
        png = out_path / f"confusion_{split}.png"
        plot_confusion(
            cm, classes, png, title=f"{config.get('model', '')} {split}: top-1 error {r['top1_error']:.2f}%"
        )
        results[split] = r | {"confusion_png": str(png)}
    write_json(out_path / "eval.json", results)
    return results | {"eval_json": str(out_path / "eval.json")}
