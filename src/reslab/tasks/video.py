"""The video task: Moving Fashion-MNIST clips (:mod:`reslab.data.video`) classified by 3D ResNets.

Default model (as the ``video`` recipe's): ``video_resnet`` at depth 10, width 8, (2+1)D convolutions, one
input channel, 40 classes: a CPU-sized member of Tran et al.'s best family (width 16 on the data's default
16 x 64 x 64 clips trained at ~1.6 clips/s on a loaded core; the recipe uses 8 x 48 x 48 clips and says why). Batches: :class:`~reslab.data.video.ClipLoader` (random
crops of the zero-padded frames, the same crop for every frame of a clip, no flips). Loss: cross-entropy.
Validation: ``val_split`` training clips held out (seeded; they show Fashion-MNIST training images that no
training clip shows while there are fewer clips than images). Evaluation: top-1 accuracy on the 40 labels and
separately on the garment and on the direction (a model blind to frame order is at most 50% on direction;
see :mod:`reslab.data.video`). :func:`evaluate_video_run` is ``reslab eval`` for a video run: those numbers
per class, per garment and per direction, and the 4 x 4 direction confusion.

MedMNIST's 3D data sets (``--dataset medmnist --set data_kwargs.flag=organmnist3d``; Yang et al. 2023) train
through the same machinery: each volume (1, D, H, W) is a one-channel clip whose time axis is the depth
(the 3D networks convolve all three axes alike; a (2+1)D network factors depth from the slice plane as it
factors time from space), batched by :class:`~reslab.data.video.ClipLoader` (random crops of the
zero-padded slices, the same crop for every slice; no flips), with the official validation split; metrics
``error`` and ``auc``, ``reslab eval`` gives the benchmark's AUC and ACC, and ``reslab predict`` takes
``.npy`` volumes (:mod:`reslab.tasks.medical`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reslab._device import autocast_ctx
from reslab.config import TrainConfig
from reslab.data.datasets import ArrayDataset, split_validation
from reslab.data.medmnist import describe_medmnist
from reslab.data.video import (
    DIRECTIONS,
    ClipLoader,
    ClipSpec,
    clip_factors,
    iterate_clips,
    load_moving_fashion,
)
from reslab.errors import CheckpointError, ConfigError
from reslab.tasks import medical
from reslab.tasks.base import EvalRequest, PredictRequest, eval_arrays, eval_dir, run_config
from reslab.tasks.loader_task import LoaderTask

OPTIONS = tuple(f.name for f in dataclasses.fields(ClipSpec))  # the task's options (task_kwargs): the clips


def clip_spec(**options: Any) -> ClipSpec:
    """The :class:`ClipSpec` of ``options`` (JSON values: lists become tuples); unknown keys: one line."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown clip option {unknown[0]!r}; choose from {', '.join(OPTIONS)}")
    if "speeds" in options:
        options["speeds"] = tuple(int(v) for v in options["speeds"])
    return ClipSpec(**options)


def load_data(
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    *,
    val_split: int | float = 0,
    split_seed: int = 0,
    **spec: Any,
) -> ArrayDataset:
    """Moving Fashion-MNIST (``spec``: :class:`ClipSpec` fields such as ``frames``, ``train_clips``), with
    ``val_split`` training clips (a count, or a fraction) held out as ``val_x`` by ``split_seed``."""
    ds = load_moving_fashion(clip_spec(**spec), data_dir, download=download)
    return split_validation(ds, val_split, seed=split_seed) if val_split else ds


def train_loader(
    data: ArrayDataset, batch_size: int, *, device: Any = "cpu", seed: int = 0, pad: int = 4, **kw: Any
) -> ClipLoader:
    """Training batches (B, C, T, H, W), normalized with the training clips' statistics, random crops."""
    return ClipLoader(
        data.train_x, data.train_y, batch_size, mean=data.mean, std=data.std, device=device, seed=seed,
        augment=pad > 0, pad=pad, **kw,
    )  # fmt: skip


@torch.no_grad()
def predict_clips(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    mean: Any,
    std: Any,
    device: Any = "cpu",
    batch_size: int = 64,
) -> tuple[torch.Tensor, float]:
    """Top-1 predictions (CPU, int64) of ``model`` for uint8 clips ``x`` and their summed cross-entropy
    against ``y`` (computed in fp32)."""
    was_training = model.training
    model.eval()
    preds, loss = [], torch.zeros((), dtype=torch.float64, device=device)
    try:
        for xb, yb in iterate_clips(x, y, batch_size, device, mean, std):
            out = model(xb).float()
            loss += F.cross_entropy(out, yb, reduction="sum")
            preds.append(out.argmax(1))
    finally:
        model.train(was_training)
    return torch.cat(preds).cpu() if preds else torch.zeros(0, dtype=torch.long), float(loss)


def clip_counts(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """float64 ``[clips, hits, garment hits, direction hits]``: what :func:`clip_scores` needs, summable
    over shards."""
    (pg, pd), (tg, td) = clip_factors(pred), clip_factors(y.cpu())
    hits = [(pred == y.cpu()).sum(), (pg == tg).sum(), (pd == td).sum()]
    return torch.tensor([len(y), *(int(h) for h in hits)], dtype=torch.float64)


def clip_scores(counts: torch.Tensor, loss_sum: float) -> dict[str, float]:
    """``loss`` (mean), ``accuracy``, ``garment_accuracy``, ``direction_accuracy`` (percent) from
    :func:`clip_counts` and the summed loss."""
    n = max(float(counts[0]), 1.0)
    acc = (counts[1:] / n * 100).tolist()
    return {
        "loss": loss_sum / n,
        "accuracy": acc[0],
        "garment_accuracy": acc[1],
        "direction_accuracy": acc[2],
    }


def evaluate(
    model: nn.Module, data: ArrayDataset, *, device: Any = "cpu", batch_size: int = 64, split: str = "test"
) -> dict[str, float]:
    """``loss``, ``accuracy``, ``garment_accuracy`` and ``direction_accuracy`` (percent) on ``split``."""
    x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
    if x is None:
        raise ConfigError(f"the clips have no {split} split (val_split=0?)")
    pred, loss = predict_clips(
        model, x, y, mean=data.mean, std=data.std, device=device, batch_size=batch_size
    )
    return clip_scores(clip_counts(pred, y), loss)


def describe(data: ArrayDataset) -> dict[str, Any]:
    """Checkpoint metadata: clip size (C, T, H, W), normalization, the 40 class names, the source (the cache
    file) and its SHA-256."""
    return {
        "dataset": data.name,
        "input_size": list(data.input_size),
        "mean": list(data.mean),
        "std": list(data.std),
        "classes": list(data.classes),
        "source": data.source,
        "sha256": data.source.partition("(sha256 ")[2].rstrip(")") or None,  # the clip file's digest
    }


def evaluate_video_run(
    path: str | os.PathLike,
    *,
    device: str = "auto",
    out_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """``reslab eval`` of a video run (its ``checkpoints/best``) or checkpoint file on the run's validation
    and test clips (rebuilt from the checkpoint's metadata; ``data_matches``: the same cache file digest as
    in training): top-1 ``error``, garment and direction accuracy, accuracy per class, per garment and per
    direction, and the direction confusion (rows true, columns predicted). Writes ``eval.json`` beside
    the run (or into ``out_dir``)."""
    from reslab._device import resolve_device
    from reslab._io import write_json
    from reslab.models.weights import load_model, resolve_checkpoint
    from reslab.precision import recorded_amp

    ckpt = resolve_checkpoint(path)
    model, meta = load_model(ckpt)
    config, info = run_config(meta)
    if "medmnist" in info:  # MedMNIST 3D volumes
        return medical.evaluate_volume_run(ckpt, model, meta, resolve_device(device), eval_dir(ckpt, out_dir),
                                           data_dir, batch_size)  # fmt: skip
    if "clip_spec" not in info:
        raise CheckpointError(f"{ckpt} has no video training metadata (config.data.clip_spec)")
    data = load_data(
        data_dir or config.get("data_dir"),
        val_split=info.get("val_split") or 0,
        split_seed=int(info.get("split_seed", 0)),
        **info["clip_spec"],
    )
    dev = resolve_device(device)
    model = model.to(dev).float().eval()
    garments = [c.rsplit(", ", 1)[0] for c in data.classes[:: len(DIRECTIONS)]]
    results: dict[str, Any] = {"checkpoint": str(ckpt), "model": meta.get("model"), "step": int(meta.get("step", -1)),
                               "data_matches": info.get("sha256") in (None, describe(data)["sha256"])}  # fmt: skip
    for split in ("val", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if x is None:
            continue
        with autocast_ctx(dev, recorded_amp(config, dev)):  # the run's own precision, as training evaluated
            pred, loss = predict_clips(model, x, y, mean=info.get("mean", data.mean),
                                       std=info.get("std", data.std), device=dev, batch_size=batch_size)  # fmt: skip
        r: dict[str, Any] = clip_scores(clip_counts(pred, y), loss)
        r = {"error": 100.0 - r["accuracy"], **r, "clips": len(y)}
        (pg, pd), (tg, td) = clip_factors(pred), clip_factors(y)
        r["per_class_accuracy"] = _per_group(pred == y, y, data.classes)
        r["per_garment_accuracy"] = _per_group(pg == tg, tg, garments)
        r["per_direction_accuracy"] = _per_group(pd == td, td, list(DIRECTIONS))
        confusion = torch.zeros(len(DIRECTIONS), len(DIRECTIONS), dtype=torch.long)
        confusion.index_put_((td, pd), torch.ones_like(td), accumulate=True)
        r["direction_confusion"] = {"labels": list(DIRECTIONS), "matrix": confusion.tolist()}
        results[split] = r
    out = eval_dir(ckpt, out_dir)
    write_json(out / "eval.json", results)
    return results | {"eval_json": str(out / "eval.json")}


def _per_group(hits: torch.Tensor, group: torch.Tensor, names: list[str]) -> dict[str, float | None]:
    """Accuracy in percent of each group (``None`` for a group with no clips)."""
    n = torch.bincount(group, minlength=len(names)).double()
    k = torch.bincount(group, weights=hits.double(), minlength=len(names))
    return {name: (round(float(k[i] / n[i] * 100), 3) if n[i] else None) for i, name in enumerate(names)}


METRICS = ("error", "garment_error", "direction_error", "loss")


@functools.lru_cache(maxsize=1)
def _clips(options: str, data_dir: str | None, download: bool) -> ArrayDataset:
    """The clips of ``options`` (a :class:`ClipSpec` as JSON), cached in the process: a sweep of short runs
    (or a test) reads Fashion-MNIST and the clip cache once."""
    return load_data(data_dir, download, **json.loads(options))


class Video(LoaderTask):
    """Video classification through the loop's seam (:class:`~reslab.tasks.base.Task`).

    - **options** (``cfg.task_kwargs``): the clips (:class:`~reslab.data.video.ClipSpec` fields:
      ``frames``, ``size``, ``speeds``, ``train_clips``, ``test_clips``, ``seed``: which clips exist, not
      the run's seed); ``cfg.augment`` switches the random crops (with ``cfg.pad``); ``cfg.dataset`` is
      not read (the task names its data).
    - **validation**: ``cfg.val_split`` training clips held out (a count or a fraction, seeded by
      ``cfg.seed``, as for classification); without one, "best" is the lowest training error.
    - **metrics**: ``error`` (top-1, percent), ``garment_error``, ``direction_error``, ``loss``: lower is
      better; the step's wrong-prediction count is top-1.
    - **ranks**: each rank evaluates its contiguous share of the clips; the counts are summed over the
      ranks. The loss is computed in fp32 on the autocast output; evaluation runs under the run's autocast.
    """

    name = "video"
    recipe = "video"
    model_task = "video-classification"
    metric_names = METRICS
    higher_is_better = False
    counts_errors = True
    data_sets = ("medmnist",)
    refuses: ClassVar[dict[str, str]] = {
        "predict": "reslab predict takes image files (and a MedMNIST 3D run .npy volumes); a video run is "
        "measured on its clips with reslab eval",
        "export": "reslab export takes image networks (N, C, H, W); a video network's clips are 5-D: "
        "export it in Python with torch.onnx.export",
        "analyze": "reslab analyze measures image classifiers on their images; a video run is measured on "
        "its clips with reslab eval",
        "sample": "a video run takes clips, not image files: reslab eval measures it on its own clips",
    }

    @classmethod
    def evaluate_run(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        return evaluate_video_run(checkpoint, device=request.device, out_dir=request.out_dir,
                                  data_dir=request.data_dir, batch_size=request.batch_size or 64)  # fmt: skip

    @classmethod
    def predictor(cls, checkpoint: str, request: PredictRequest) -> medical.VolumeFiles:
        """A MedMNIST 3D run predicts ``.npy`` volumes; a Moving Fashion-MNIST run refuses (one line)."""
        from reslab.models.weights import read_metadata, resolve_checkpoint

        if "medmnist" in run_config(read_metadata(resolve_checkpoint(checkpoint)))[1]:
            return medical.VolumeFiles(checkpoint, request)
        return super().predictor(checkpoint, request)

    @classmethod
    def evaluation_lines(cls, result: dict[str, Any]) -> list[str]:
        """Top-1, garment and direction error per split, then the accuracy per garment (MedMNIST: AUC, ACC)."""
        if "medmnist" in result:
            return medical.evaluation_lines(result)
        r = result
        lines = [f"checkpoint: {r['checkpoint']} (step {r['step']}; video, {r['model']})"]
        for split in (s for s in ("val", "test") if s in r):
            s = r[split]
            lines.append(f"{split}: error {s['error']:.2f}%  garment accuracy {s['garment_accuracy']:.2f}%  "
                         f"direction accuracy {s['direction_accuracy']:.2f}%  ({s['clips']} clips)")  # fmt: skip
            lines += [f"  {name:>16s}  {_pct(acc)}" for name, acc in s["per_garment_accuracy"].items()]
        if not r.get("data_matches", True):
            lines.append(
                "note: the clips rebuilt here differ from the training run's (another cache or version)"
            )
        return [*lines, f"results: {r['eval_json']}"]

    def _set_up(self, cfg: TrainConfig, options: dict[str, Any]) -> None:
        if cfg.dataset == "medmnist":
            return self._set_up_volumes(cfg, options)
        rt, dist = self.rt, self.rt.dist
        spec = dataclasses.asdict(clip_spec(**options))
        ds = _clips(json.dumps(spec, sort_keys=True), cfg.data_dir, cfg.download)
        ds = split_validation(ds, cfg.val_split, seed=cfg.seed) if cfg.val_split else ds
        if cfg.num_classes not in (None, ds.num_classes):
            raise ConfigError(f"num_classes={cfg.num_classes}, but the clips have {ds.num_classes} classes")
        self.fixed_kwargs = {"num_classes": ds.num_classes, "in_chans": ds.in_chans}
        self._loss = lambda out, y: F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
        self.info = describe(ds) | {
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
        self.loader = train_loader(
            ds, self.batch_size, device=rt.device, seed=cfg.seed, pad=cfg.pad if cfg.augment else 0,
            drop_last=True, shard=(dist.rank, dist.world_size), channels_last=rt.channels_last,
        )  # fmt: skip
        self.selection = "val_error" if ds.val_y is not None else "train_error (no validation split)"
        for split, (x, y) in eval_arrays(ds, cfg, rt).items():
            self._evals[split] = self._evaluation(x, y, ds.mean, ds.std)

    def _set_up_volumes(self, cfg: TrainConfig, options: dict[str, Any]) -> None:
        """MedMNIST 3D: the volumes as one-channel clips, depth as time (module docstring)."""
        if options:
            raise ConfigError(
                "task_kwargs shape the Moving Fashion-MNIST clips, not MedMNIST volumes: start from --recipe "
                "medmnist3d (the video recipe's clips do not apply)"
            )
        rt, dist = self.rt, self.rt.dist
        ds = medical.load_volumes(json.dumps(cfg.data_kwargs, sort_keys=True), cfg.data_dir, cfg.download)
        if cfg.num_classes not in (None, ds.num_classes):
            raise ConfigError(f"num_classes={cfg.num_classes}, but {ds.num_classes} classes")
        self.fixed_kwargs = {"num_classes": ds.num_classes, "in_chans": ds.in_chans}
        objective = medical.Objective(ds.num_classes, label_smoothing=cfg.label_smoothing)
        self._loss, self.metric_names = objective.loss, medical.METRICS
        self.info = describe(ds) | {
            "task": "video", "num_classes": ds.num_classes, "flip": False, "num_train": len(ds.train_y),
            "num_val": len(ds.val_y), "num_test": len(ds.test_y), "val_split": 0, "multi_label": False,
            "medmnist": describe_medmnist(**cfg.data_kwargs),
        }  # fmt: skip
        self.loader = train_loader(
            ds, self.batch_size, device=rt.device, seed=cfg.seed, pad=cfg.pad if cfg.augment else 0,
            drop_last=True, shard=(dist.rank, dist.world_size), channels_last=rt.channels_last,
        )  # fmt: skip
        self.selection = "val_error (the official validation split)"
        batches = functools.partial(iterate_clips, batch_size=self.eval_batch_size, device=rt.device,
                                    mean=ds.mean, std=ds.std)  # fmt: skip
        for split in (
            ("val", "test") if cfg.eval_test else ("val",)
        ):  # whole splits: AUC is no sum over shards
            x, y = (getattr(ds, f"{split}_{k}")[: cfg.eval_subset].to(rt.device) for k in "xy")
            self._evals[split] = medical.scorer(x, y, batches, objective, rt.device, rt.amp_dtype)

    def describe(self) -> str:
        i = self.info
        val = f", {i['num_val']} val" if i["num_val"] else ""
        size = "x".join(str(v) for v in i["input_size"])
        what = (
            f"volumes of {size} ({i['medmnist']['flag']}, {i['medmnist']['task']})"
            if "medmnist" in i
            else f"clips of {size}"
        )
        return f"{i['dataset']} ({i['num_train']} train{val}, {i['num_test']} test {what})"

    def _evaluation(
        self, x: torch.Tensor, y: torch.Tensor, mean: Any, std: Any
    ) -> Callable[[nn.Module], dict[str, float]]:
        rt = self.rt

        def run(model: nn.Module) -> dict[str, float]:
            with autocast_ctx(rt.device, rt.amp_dtype):
                pred, loss = predict_clips(
                    model, x, y, mean=mean, std=std, device=rt.device, batch_size=self.eval_batch_size
                )
            sums = torch.cat([clip_counts(pred, y), torch.tensor([loss], dtype=torch.float64)])
            if rt.dist.enabled:
                sums = sums.to(rt.device)  # nccl: a device tensor
                torch.distributed.all_reduce(sums)
                sums = sums.cpu()
            s = clip_scores(sums[:4], float(sums[4]))
            return {
                "error": 100.0 - s["accuracy"],
                "garment_error": 100.0 - s["garment_accuracy"],
                "direction_error": 100.0 - s["direction_accuracy"],
                "loss": s["loss"],
            }

        return run


def _pct(v: float | None) -> str:
    return "   -   " if v is None else f"{v:6.2f}%"
