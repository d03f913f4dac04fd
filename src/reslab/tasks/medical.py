"""MedMNIST's labels and metrics for the classification and video tasks (:mod:`reslab.data.medmnist`).

**Objective**: a multi-class, binary or ordinal-regression data set is classified with the cross-entropy
over its classes (binary: 2 logits; ordinal regression, RetinaMNIST's 5 grades: 5 classes, as the
benchmark treats it); a multi-label one (ChestMNIST's 14 findings) with the binary cross-entropy of one
logit per label (``BCEWithLogitsLoss``, mean over samples and labels) (Yang et al. 2023, "Baseline
Methods"; ``MedMNIST/experiments`` trains the same two losses). :class:`Objective` holds either.

**Metrics** (``medmnist/evaluator.py`` 3.0.2 ``getAUC`` / ``getACC``, on the softmax (sigmoid for
multi-label) of the logits, as the benchmark scores):

- AUC: multi-label, the mean over labels of each label's ROC AUC; binary, the ROC AUC of class 1's
  probability; multi-class / ordinal, the mean over classes of the one-vs-rest ROC AUC.
- ACC: multi-label, each label thresholded at 0.5, the accuracy averaged over labels; binary, class 1's
  probability > 0.5; multi-class, the argmax.

ROC AUC is the Mann-Whitney statistic (average ranks for ties: exactly ``sklearn.metrics.roc_auc_score``,
which the package calls; the tests compare both). **Deviation**: where a label or class has only one
value in an evaluation set (small sets) its AUC is undefined; ``sklearn`` raises there, reslab leaves it
out of the mean and counts it (``auc_undefined``); ``nan`` if none is defined. Reported beside the task's
``error`` (percent, ``100 * (1 - ACC)``, the primary metric: model selection is on the validation error,
where the benchmark's scripts keep the best validation AUC).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reslab._device import autocast_ctx
from reslab.data.datasets import ArrayDataset
from reslab.data.medmnist import load_medmnist, unpack_labels
from reslab.errors import ConfigError, first_line
from reslab.tasks.base import Found, PredictRequest

METRICS = ("error", "auc")  # the task's metric_names on MedMNIST data (loss in the eval report)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of scores ``score`` for 0/1 targets ``y`` (Mann-Whitney U / (n_pos n_neg), ties count half);
    ``nan`` if ``y`` holds one value only."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool).ravel()
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return math.nan
    ranks = rankdata(np.asarray(score, dtype=np.float64).ravel())
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def auc_acc(y: np.ndarray, scores: np.ndarray, multi_label: bool) -> dict[str, Any]:
    """MedMNIST's AUC and ACC (module docstring) of ``scores`` (N, K) probabilities for targets ``y`` ((N,)
    class indices, or (N, L) zeros and ones when ``multi_label``); ``per_label`` AUCs where there is more
    than one class or label, ``auc_undefined``: how many were left out of the mean."""
    y, scores = np.asarray(y), np.asarray(scores, dtype=np.float64)
    if multi_label:
        aucs = [roc_auc(y[:, j], scores[:, j]) for j in range(scores.shape[1])]
        acc = float(np.mean((scores > 0.5) == y.astype(bool))) if len(y) else math.nan
    elif scores.shape[1] == 2:
        aucs = [roc_auc(y == 1, scores[:, 1])]
        acc = float(np.mean((scores[:, 1] > 0.5) == (y == 1))) if len(y) else math.nan
    else:
        aucs = [roc_auc(y == i, scores[:, i]) for i in range(scores.shape[1])]
        acc = float(np.mean(scores.argmax(1) == y)) if len(y) else math.nan
    defined = [a for a in aucs if not math.isnan(a)]
    return {
        "auc": float(np.mean(defined)) if defined else math.nan,
        "acc": acc,
        "auc_undefined": len(aucs) - len(defined),
        "per_label_auc": aucs if len(aucs) > 1 else None,
    }


def unpack(y: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Packed multi-label targets (:func:`reslab.data.medmnist.label_bits`) as (N, L) float zeros and ones."""
    return unpack_labels(y, num_labels).float()


class Objective:
    """The training loss and the wrong-prediction count of a batch: cross-entropy over classes (with
    ``label_smoothing``) and top-1 mistakes, or, ``multi_label``, the binary cross-entropy per label and
    the wrong label decisions (logit > 0, i.e. probability > 0.5) divided by the labels: the train error
    is then ``100 * (1 - ACC)`` as evaluated."""

    def __init__(self, num_labels: int, *, multi_label: bool = False, label_smoothing: float = 0.0) -> None:
        self.num_labels, self.multi_label, self.label_smoothing = num_labels, multi_label, label_smoothing

    def loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if self.multi_label:
            bce = F.binary_cross_entropy_with_logits(out, unpack(y, self.num_labels), reduction="none").mean(
                1
            )
            return bce.mean() if reduction == "mean" else bce.sum()
        return F.cross_entropy(out, y, label_smoothing=self.label_smoothing, reduction=reduction)

    def errors(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            wrong = (out > 0).float() != unpack(y, self.num_labels)
            return wrong.float().sum() / self.num_labels
        return (out.argmax(1) != y).sum()

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        return out.sigmoid() if self.multi_label else out.softmax(1)


@torch.inference_mode()
def score(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    objective: Objective,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """``model`` over normalized ``batches`` once (images or clips): ``error``, ``auc``, ``acc``, ``loss``
    (the evaluation loss, no label smoothing), ``n``, and ``scores``/``y`` (numpy) for the details."""
    plain = Objective(objective.num_labels, multi_label=objective.multi_label)
    was_training = model.training
    model.eval()
    probs, targets, loss_sum = [], [], 0.0
    try:
        for xb, yb in batches:
            xb, yb = xb.to(device), yb.to(device)
            with autocast_ctx(device, amp_dtype):
                out = model(xb)
            out = out.float()
            loss_sum += float(plain.loss(out, yb, reduction="sum"))
            probs.append(plain.probabilities(out).cpu())
            targets.append(unpack(yb, plain.num_labels).long().cpu() if plain.multi_label else yb.cpu())
    finally:
        model.train(was_training)
    scores = torch.cat(probs).double().numpy() if probs else np.zeros((0, plain.num_labels))
    y = torch.cat(targets).numpy() if targets else np.zeros((0,), dtype=np.int64)
    r = auc_acc(y, scores, plain.multi_label)
    n = len(y)
    return r | {
        "error": 100.0 * (1.0 - r["acc"]),
        "loss": loss_sum / max(n, 1),
        "n": n,
        "scores": scores,
        "y": y,
    }


def scorer(
    x: torch.Tensor,
    y: torch.Tensor,
    batches: Callable[..., Iterable[tuple[torch.Tensor, torch.Tensor]]],
    objective: Objective,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> Callable[[nn.Module], dict[str, float]]:
    """A training run's evaluation of one whole split (every rank scores all of it: AUC is no sum over
    shards): ``model -> {"error", "auc"}``; ``batches(x, y)`` normalizes (images or clips)."""

    def run(model: nn.Module) -> dict[str, float]:
        r = score(model, batches(x, y), objective, device=device, amp_dtype=amp_dtype)
        return {k: r[k] for k in METRICS}

    return run


def details(r: dict[str, Any], classes: list[str], multi_label: bool) -> dict[str, Any]:
    """``reslab eval``'s record of one split from :func:`score`: the metrics, and per label (AUC, accuracy)
    or per class (accuracy, the confusion matrix: rows true, columns predicted)."""
    scores, y = r["scores"], r["y"]
    out = {k: r[k] for k in ("auc", "acc", "error", "loss", "n", "auc_undefined")}
    per_auc = r["per_label_auc"] or [None] * len(classes)
    if multi_label:
        acc = ((scores > 0.5) == y.astype(bool)).mean(0) if len(y) else [math.nan] * len(classes)
        out["per_label"] = {
            c: {"auc": _round(a), "accuracy": _round(float(p) * 100)}
            for c, a, p in zip(classes, per_auc, acc)
        }
        return out
    k = len(classes)
    pred = scores.argmax(1) if len(y) else np.zeros(0, dtype=np.int64)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    hits = np.diag(cm) / np.maximum(cm.sum(1), 1) * 100
    out["per_class_accuracy"] = {c: round(float(h), 3) for c, h in zip(classes, hits)}
    out["confusion_matrix"] = cm.tolist()
    return out


def evaluate_sets(
    model: nn.Module,
    ds: Any,
    splits: Iterable[str],
    batches: Callable[..., Iterable[tuple[torch.Tensor, torch.Tensor]]],
    info: dict[str, Any],
    device: torch.device,
    amp_dtype: torch.dtype | None,
    out: Path,
) -> dict[str, Any]:
    """``reslab eval`` of a MedMNIST run (images or volumes): per split of ``ds`` the benchmark's AUC and
    ACC and :func:`details` (a confusion-matrix PNG in ``out`` where the labels are classes); ``batches(x,
    y)`` makes the normalized batches. ``info``: the run's data record (``medmnist``, ``classes``)."""
    from reslab.tasks.metrics import plot_confusion

    classes = list(info.get("classes", ds.classes))
    objective = Objective(len(classes), multi_label=ds.multi_label)
    results: dict[str, Any] = {"medmnist": info["medmnist"]}
    for split in (s for s in splits if getattr(ds, f"{s}_x", None) is not None):
        r = score(model, batches(getattr(ds, f"{split}_x"), getattr(ds, f"{split}_y")), objective,
                  device=device, amp_dtype=amp_dtype)  # fmt: skip
        r = details(r, classes, ds.multi_label)
        if "confusion_matrix" in r:
            png = out / f"confusion_{split}.png"
            title = f"{info['medmnist']['flag']} {split}: AUC {r['auc']:.3f}, ACC {r['acc']:.3f}"
            plot_confusion(torch.tensor(r["confusion_matrix"]), classes, png, title=title)
            r["confusion_png"] = str(png)
        results[split] = r
    return results


def refuse_tta(tta: str | None) -> None:
    """``reslab eval --tta flip`` of a MedMNIST run: one line (flips are no valid view of these images)."""
    if tta not in (None, "none"):
        raise ConfigError(
            f"--tta {tta}: a MedMNIST run is evaluated as trained (a mirrored scan is another anatomy)"
        )


def _round(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else round(float(v), 4)


def evaluation_lines(result: dict[str, Any]) -> list[str]:
    """What ``reslab eval`` prints of a MedMNIST run: AUC and ACC per split (the benchmark's two numbers),
    the error and loss, then per label (multi-label) or per class."""
    m = result["medmnist"]
    lines = [f"checkpoint: {result['checkpoint']} (step {result['step']}; MedMNIST {m['flag']}, {m['task']})"]
    for split in (s for s in ("val", "test") if s in result):
        s = result[split]
        undefined = f"; AUC undefined for {s['auc_undefined']} (one value only)" if s["auc_undefined"] else ""
        lines.append(
            f"{split}: AUC {s['auc']:.4f}  ACC {s['acc']:.4f}  (error {s['error']:.2f}%, loss {s['loss']:.4f}, "
            f"{s['n']} samples{undefined})"
        )
        if "per_label" in s:
            lines += [
                f"  {name:>18s}  AUC {_num(v['auc'])}  accuracy {_num(v['accuracy'])}%"
                for name, v in s["per_label"].items()
            ]
        else:
            lines += [f"  {name:>18s}  {acc:6.2f}%" for name, acc in s["per_class_accuracy"].items()]
        if s.get("confusion_png"):
            lines.append(f"  confusion matrix: {s['confusion_png']}")
    return [*lines, f"results: {result['eval_json']}"]


def _num(v: float | None) -> str:
    return "  -   " if v is None else f"{v:6.4g}"


# ---------------------------------------------------------------------------------- 3D: the video task


@functools.lru_cache(maxsize=1)
def load_volumes(options: str, data_dir: str | None, download: bool = False) -> ArrayDataset:
    """MedMNIST 3D volumes of ``data_kwargs`` (JSON), read once per process; a 2D flag is one line."""
    ds = load_medmnist(data_dir=data_dir, download=download, **json.loads(options))
    if ds.train_x.ndim != 5:
        raise ConfigError(
            f"{json.loads(options)['flag']} holds 2D images: train it with --task classification"
        )
    return ds


def evaluate_volume_run(
    ckpt: Any,
    model: nn.Module,
    meta: dict[str, Any],
    dev: torch.device,
    out: Path,
    data_dir: Any,
    batch_size: int,
) -> dict[str, Any]:
    """``reslab eval`` of a MedMNIST 3D run: the benchmark's AUC and ACC on the validation and test volumes
    (rebuilt from the run's ``data_kwargs``), written to ``out/eval.json``."""
    from reslab._io import write_json
    from reslab.data.video import iterate_clips
    from reslab.precision import recorded_amp
    from reslab.tasks.base import run_config

    config, info = run_config(meta)
    ds = load_volumes(
        json.dumps(config.get("data_kwargs", {}), sort_keys=True), data_dir or config.get("data_dir")
    )
    batches = functools.partial(iterate_clips, batch_size=batch_size, device=dev,
                                mean=info.get("mean", ds.mean), std=info.get("std", ds.std))  # fmt: skip
    results = {"checkpoint": str(ckpt), "model": meta.get("model"), "step": int(meta.get("step", -1))}
    amp_dtype = recorded_amp(config, dev)  # the run's own precision, as training evaluated it
    results |= evaluate_sets(
        model.to(dev).float().eval(), ds, ("val", "test"), batches, info, dev, amp_dtype, out
    )
    write_json(out / "eval.json", results)
    return results | {"eval_json": str(out / "eval.json")}


class VolumeFiles:
    """A MedMNIST 3D run loaded for ``reslab predict`` (:class:`reslab.tasks.base.FilePredictor`): each
    ``.npy`` file one volume, (D, H, W) or (1, D, H, W) of the training size, uint8 as in the ``.npz`` (or
    floats in [0, 1], as the ``medmnist`` package's ``MedMNIST3D`` hands them out: times 255), normalized
    with the run's statistics; its top-``k`` classes are printed, nothing is written."""

    output = None
    output_required = False

    def __init__(self, checkpoint: str, request: PredictRequest) -> None:
        from reslab._device import resolve_device
        from reslab.tasks.inputs import load

        self.model, meta = load(checkpoint)
        self.info = meta["config"].get("data") or {}
        self.model.to(resolve_device(request.device))
        self.request, self.warnings = request, []
        self.header = {"checkpoint": checkpoint, "model": getattr(self.model, "model_name", None),
                       "input_size": self.info["input_size"]}  # fmt: skip

    def read(self, file: str) -> torch.Tensor:
        """The normalized volume (1, C, D, H, W) of ``file``; an unreadable one raises one line."""
        shape = tuple(self.info["input_size"])
        if not file.lower().endswith(".npy"):
            raise ConfigError(f"{file}: a MedMNIST 3D run predicts volumes: give .npy files of shape {shape}")
        try:
            v = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ConfigError(f"{file}: not a readable .npy volume: {first_line(e, 120)}") from None
        v = v[None] if v.ndim == len(shape) - 1 else v
        if v.dtype.kind == "f" and v.size and not (float(v.min()) >= 0.0 and float(v.max()) <= 1.0):
            raise ConfigError(
                f"{file}: float values in [{v.min():g}, {v.max():g}]; floats must lie in [0, 1]"
            )
        if tuple(v.shape) != shape or not (v.dtype == np.uint8 or v.dtype.kind == "f"):
            raise ConfigError(f"{file}: {v.dtype} {tuple(v.shape)}, expected a uint8 volume of shape {shape}")
        x = torch.from_numpy(v.astype(np.float32) / (255.0 if v.dtype == np.uint8 else 1.0))
        mean, std = (
            torch.tensor(self.info[k], dtype=torch.float32).view(-1, 1, 1, 1) for k in ("mean", "std")
        )
        return ((x - mean) / std)[None]

    def predict(self, files: Sequence[str]) -> Iterator[Found | tuple[str, str]]:
        from reslab.tasks.classify_files import Prediction, predict_tensors

        for f in map(str, files):
            try:
                x = self.read(f)
            except ConfigError as e:
                yield f, str(e)
                continue
            top = predict_tensors(self.model, x, self.info["classes"], self.request.topk)[0]
            p = Prediction(f, top)
            yield Found(f, p.as_dict(), p.lines())
