"""Evaluation: top-1/top-5 error, loss, confusion matrix, per-class accuracy; ``reslab eval``.

:func:`evaluate` runs a model over every sample of an evaluation set once (no augmentation, batches made
on the device by :func:`reslab.data.iterate_eval`), summing on the device and syncing once at the end.
:func:`evaluate_checkpoint` is ``reslab eval``: it rebuilds the model and the data preprocessing from the
checkpoint's stored config and writes ``eval.json`` and a confusion-matrix PNG.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from reslab.errors import CheckpointError, ConfigError


def autocast_ctx(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def evaluate(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    mean: Any,
    std: Any,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    num_classes: int | None = None,
    tta_flip: bool = False,
    confusion: bool = False,
) -> dict[str, Any]:
    """Loss, top-1 and top-5 error (percent) of ``model`` on uint8 images ``x`` with labels ``y``.

    ``tta_flip`` averages the softmax of each image and its mirror image. ``confusion=True`` adds the
    confusion matrix (rows: true class, columns: predicted) as a CPU int64 tensor.
    """
    from reslab.data import iterate_eval

    nc = int(num_classes or getattr(model, "num_classes", 0) or int(y.max()) + 1)
    batches = iterate_eval(x, y, batch_size, device, mean, std, channels_last=channels_last)
    return evaluate_batches(
        model,
        batches,
        device=device,
        amp_dtype=amp_dtype,
        num_classes=nc,
        tta_flip=tta_flip,
        confusion=confusion,
    )


@torch.inference_mode()
def evaluate_batches(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    num_classes: int,
    tta_flip: bool = False,
    confusion: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    """:func:`evaluate` over any iterable of normalized ``(images, labels)`` batches (moved to ``device``)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    nc = int(num_classes)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    cm = torch.zeros(nc * nc, dtype=torch.int64, device=device) if confusion else None
    k = min(5, nc)
    n = 0
    try:
        for xb, yb in batches:
            xb = xb.to(device, non_blocking=True)
            yb = yb.to(device, non_blocking=True)
            if channels_last and xb.ndim == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast_ctx(device, amp_dtype):
                logits = model(xb)
                if tta_flip:
                    logits = torch.stack([logits, model(xb.flip(3))]).float().softmax(-1).mean(0).log()
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
            pred = logits.topk(k, dim=1).indices
            hit = pred == yb[:, None]
            top1 += (~hit[:, 0]).sum()
            top5 += (~hit.any(dim=1)).sum()
            if cm is not None:
                cm += torch.bincount(yb * nc + pred[:, 0], minlength=nc * nc)
            n += len(yb)
    finally:
        model.train(was_training)
    out: dict[str, Any] = {
        "n": n,
        "loss": loss_sum.item() / max(n, 1),
        "top1_error": 100.0 * top1.item() / max(n, 1),
        "top5_error": 100.0 * top5.item() / max(n, 1),
    }
    if cm is not None:
        out["confusion"] = cm.view(nc, nc).cpu()
    return out


# -------------------------------------------------------------------------------------- reslab eval


def _rebuild_data(config: dict[str, Any], data_dir: str | None):
    from reslab.data import load_dataset, split_validation, subset_dataset

    name = config.get("dataset")
    if not name:
        raise CheckpointError(
            "the checkpoint's metadata has no training config (dataset); cannot rebuild data"
        )
    if name == "imagefolder":
        raise ConfigError("reslab eval of imagefolder runs is not supported yet; evaluate in Python")
    ds = load_dataset(name, data_dir or config.get("data_dir"), download=False)
    if config.get("subset"):
        ds = subset_dataset(ds, int(config["subset"]), seed=int(config.get("seed", 0)), stratified=True)
    if config.get("val_split"):
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
    from reslab.models.weights import load_model, resolve_checkpoint
    from reslab.train.precision import precision_name, resolve_amp

    ckpt = Path(resolve_checkpoint(path))
    model, meta = load_model(ckpt)
    config = meta.get("config") or {}
    if isinstance(config, str):
        config = json.loads(config)
    data_info = config.get("data", {})
    ds = _rebuild_data(config, data_dir)
    mean, std = data_info.get("mean", ds.mean), data_info.get("std", ds.std)
    classes = list(data_info.get("classes", ds.classes))
    dev = resolve_device(device)
    model = model.to(dev).float().eval()
    if tta not in (None, "none", "flip"):
        raise ConfigError(f"--tta must be flip or none, got {tta!r}")
    out_path = Path(out_dir) if out_dir else ckpt.parent
    if out_path.name == "checkpoints":
        out_path = out_path.parent
    # the run's own amp setting, resolved for this device as training resolved it (precision.py)
    amp_dtype = resolve_amp(str(config.get("amp", "auto")), dev)
    results: dict[str, Any] = {
        "checkpoint": str(ckpt),
        "step": int(meta.get("step", -1)),
        "tta": tta or "none",
        "precision": precision_name(amp_dtype),
    }
    if meta.get("convention"):  # a foreign checkpoint: how it was read
        results["convention"] = meta["convention"]
    pngs = []
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
        r["confusion_png"] = str(png)
        pngs.append(png)
        results[split] = r
    write_json(out_path / "eval.json", results)
    results["eval_json"] = str(out_path / "eval.json")
    return results


def plot_confusion(cm: torch.Tensor, classes: list[str], path: Path, title: str = "") -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reslab._io import write_bytes

    n = len(classes)
    norm = cm.double() / cm.sum(1, keepdim=True).clamp_min(1).double()
    size = max(5.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
        for i in range(n):
            for j in range(n):
                v = int(cm[i, j])
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
