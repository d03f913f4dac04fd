"""The video task: Moving Fashion-MNIST clips (:mod:`reslab.data.video`) classified by 3D ResNets.

Default model: ``video_resnet`` at depth 10, width 16, (2+1)D convolutions, one input channel, 40 classes:
a CPU-sized member of Tran et al.'s best family. Batches: :class:`~reslab.data.video.ClipLoader` (random
crops of the zero-padded frames, the same crop for every frame of a clip, no flips). Loss: cross-entropy.
Evaluation: top-1 accuracy on the 40 labels and separately on the garment and on the direction (a model
blind to frame order is at most 50% on direction; see :mod:`reslab.data.video`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab.data.datasets import ArrayDataset
from reslab.data.video import ClipLoader, ClipSpec, clip_factors, iterate_clips, load_moving_fashion
from reslab.tasks.base import Task


def load_data(data_dir: str | os.PathLike | None = None, download: bool = False, **spec: Any) -> ArrayDataset:
    """Moving Fashion-MNIST (``spec``: :class:`ClipSpec` fields such as ``frames``, ``train_clips``)."""
    return load_moving_fashion(ClipSpec(**spec), data_dir, download=download)


def train_loader(
    data: ArrayDataset, batch_size: int, *, device: Any = "cpu", seed: int = 0, pad: int = 4, **kw: Any
) -> ClipLoader:
    """Training batches (B, C, T, H, W), normalized with the training clips' statistics, random crops."""
    return ClipLoader(
        data.train_x, data.train_y, batch_size, mean=data.mean, std=data.std, device=device, seed=seed,
        augment=pad > 0, pad=pad, **kw,
    )  # fmt: skip


@torch.no_grad()
def evaluate(
    model: nn.Module, data: ArrayDataset, *, device: Any = "cpu", batch_size: int = 64, split: str = "test"
) -> dict[str, float]:
    """``loss``, ``accuracy``, ``garment_accuracy`` and ``direction_accuracy`` (percent) on ``split``."""
    x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
    was_training = model.training
    model.eval()
    preds, loss = [], 0.0
    try:
        for xb, yb in iterate_clips(x, y, batch_size, device, data.mean, data.std):
            out = model(xb)
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
            preds.append(out.argmax(1).cpu())
    finally:
        model.train(was_training)
    pred = torch.cat(preds)
    (pg, pd), (tg, td) = clip_factors(pred), clip_factors(y)
    return {
        "loss": loss / len(y),
        "accuracy": _percent(pred == y),
        "garment_accuracy": _percent(pg == tg),
        "direction_accuracy": _percent(pd == td),
    }


def _percent(hits: torch.Tensor) -> float:
    return float(hits.double().mean() * 100)


def describe(data: ArrayDataset) -> dict[str, Any]:
    """Checkpoint metadata: clip size (C, T, H, W), normalization, the 40 class names, source + SHA-256."""
    return {
        "dataset": data.name,
        "input_size": list(data.input_size),
        "mean": list(data.mean),
        "std": list(data.std),
        "classes": list(data.classes),
        "source": data.source,
    }


TASK = Task(
    name="video",
    model_task="video-classification",
    default_model="video_resnet",
    default_model_kwargs={"depth": 10, "width": 16, "conv": "2plus1d", "in_chans": 1, "num_classes": 40},
    default_data="moving-fashion-mnist",
    primary_metric="accuracy",
    higher_is_better=True,
    load_data=load_data,
    train_loader=train_loader,
    loss=F.cross_entropy,
    evaluate=evaluate,
    describe=describe,
)
