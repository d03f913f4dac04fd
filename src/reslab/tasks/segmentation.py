"""Segmentation on the Fashion-MNIST scenes: DeepLabv3 / FCN on a reslab backbone.

:class:`SegmentationTask` holds the model operations (build, batch, loss, predict, draw, mIoU);
:class:`Segmentation` is the task the loop trains (:class:`reslab.tasks.scenes.SceneTraining`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab.data.scenes import SceneDataset, Scenes
from reslab.models.dense import SEGMENTERS, create_segmenter
from reslab.tasks.base import PredictRequest
from reslab.tasks.metrics import SegmentationMetric
from reslab.tasks.scenes import (
    PALETTE,
    Batch,
    SceneOps,
    SceneTraining,
    _flip_mask,
    _name,
    _num,
    _rgb,
    spec_of,
)


class SegmentationTask(SceneOps):
    """DeepLabV3 / FCN on the scenes' class maps; metric mIoU (``miou`` selects)."""

    name = "segmentation"
    archs = SEGMENTERS
    metrics = ("miou", "miou_fg", "pixel_acc")
    eval_batch = 32

    @staticmethod
    def create(arch: str, backbone: str, size: int, **kwargs: Any) -> nn.Module:
        """:func:`reslab.models.dense.create_segmenter` for scenes of ``size`` pixels."""
        return create_segmenter(arch, backbone, image_size=size, **kwargs)

    aux_weight = 0.5  # torchvision's reference recipe

    def build_model(
        self,
        data: SceneDataset,
        *,
        arch: str = "deeplabv3",
        backbone: str = "resnet18",
        init_from: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> nn.Module:
        """:func:`reslab.models.dense.create_segmenter` for ``data`` (ASPP rates scaled to the scene size,
        :func:`reslab.models.dense.aspp_rates`); ``kwargs`` as there."""
        kwargs.setdefault("image_size", data.config.size)
        return create_segmenter(
            arch,
            backbone,
            num_classes=data.num_classes,
            in_chans=data.in_chans,
            image_mean=data.mean,
            image_std=data.std,
            init_from=init_from,
            **kwargs,
        )

    @staticmethod
    def normalize(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the model's input, with the statistics in ``model.spec``."""
        spec = spec_of(model)
        mean = torch.tensor(spec["image_mean"], device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(spec["image_std"], device=images.device).view(1, -1, 1, 1)
        return (images - mean) / std

    def batch(
        self,
        scenes: Scenes,
        index: torch.Tensor | Sequence[int],
        *,
        device: torch.device | str = "cpu",
        augment: bool = False,
        generator: torch.Generator | None = None,
        flips: torch.Tensor | None = None,
    ) -> Batch:
        """Scenes ``index``: images in [0, 1] and class maps (B, H, W), flipped together with ``augment``
        (or where ``flips``, bool per scene, says)."""
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        flip = _flip_mask(len(index), augment, generator, flips)
        images = self._images(scenes, index, flip, device)
        target = scenes.semantic(index)
        if flip.any():
            target[flip] = target[flip].flip(-1)
        return Batch(images, target.to(device, non_blocking=True), index)

    def train_batch(
        self, scenes: Scenes, index: torch.Tensor, *, device: torch.device, flips: torch.Tensor, arch: str
    ) -> Batch:
        """A training batch (every head takes the same)."""
        return self.batch(scenes, index, device=device, flips=flips)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-pixel cross-entropy of ``out`` (+ 0.5 x that of ``aux`` when the model has one)."""
        out = model(self.normalize(model, batch.images))
        parts = {"loss_out": F.cross_entropy(out["out"], batch.targets)}
        if "aux" in out:
            parts["loss_aux"] = F.cross_entropy(out["aux"], batch.targets)
        total = parts["loss_out"] + self.aux_weight * parts.get("loss_aux", 0.0)
        return total, {k: v.detach() for k, v in parts.items()}

    @torch.no_grad()
    def predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Class maps int64 (B, H, W) for float images in [0, 1]."""
        was = model.training
        model.eval()
        try:
            return model(self.normalize(model, images))["out"].argmax(1)
        finally:
            model.train(was)

    @staticmethod
    def draw(
        image: torch.Tensor, class_map: torch.Tensor, num_classes: int, *, alpha: float = 0.5
    ) -> torch.Tensor:
        """``image`` (C, H, W; uint8, or float in [0, 1]) as RGB uint8 (3, H, W) with every non-background
        class of ``class_map`` (H, W) blended in its colour, the same as :meth:`DetectionTask.draw`'s
        (``draw_segmentation_masks``)."""
        from torchvision.utils import draw_segmentation_masks

        rgb = _rgb(image)
        present = [c for c in range(1, num_classes) if bool((class_map == c).any())]
        if not present:
            return rgb
        masks = torch.stack([class_map.cpu() == c for c in present])
        palette = [PALETTE[(c - 1) % len(PALETTE)] for c in present]
        return draw_segmentation_masks(rgb, masks, alpha=alpha, colors=palette)

    def evaluate(
        self,
        model: nn.Module,
        scenes: Scenes,
        *,
        device: torch.device | str = "cpu",
        batch_size: int = 32,
    ) -> dict[str, Any]:
        """``miou``, ``miou_fg``, ``pixel_acc`` and per-class ``iou`` over every pixel of ``scenes``."""
        metric = SegmentationMetric(int(spec_of(model)["num_classes"]))
        for lo in range(0, len(scenes), batch_size):
            batch = self.batch(scenes, range(lo, min(lo + batch_size, len(scenes))), device=device)
            metric.update(self.predict(model, batch.images).cpu(), batch.targets.cpu())
        return metric.compute()

    def evaluate_per_class(
        self, model: nn.Module, scenes: Scenes, classes: Sequence[str], *, device: Any, batch_size: int
    ) -> dict[str, Any]:
        """:meth:`evaluate` with the IoU per class name (background included)."""
        r = self.evaluate(model, scenes, device=device, batch_size=batch_size)
        r["per_class"] = {classes[c]: {"iou": _num(v)} for c, v in enumerate(r.pop("iou"))}
        return r

    def found(
        self, model: nn.Module, image: torch.Tensor, classes: Sequence[str], request: PredictRequest
    ) -> tuple[dict[str, Any], list[str], torch.Tensor]:
        """What ``reslab predict`` reports of one uint8 image (C, H, W): each class's share of the pixels
        (background included), as JSON and text, and the class map drawn. The image is resized to the
        training size (bilinear) and the class map back (nearest)."""
        spec = spec_of(model)
        x = image.to(next(model.parameters()).device).float().div(255)[None]
        size, (h, w) = spec.get("image_size"), image.shape[-2:]
        if size and (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        class_map = self.predict(model, x)
        if class_map.shape[-2:] != (h, w):
            class_map = F.interpolate(class_map[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
        class_map = class_map[0].cpu()
        counts = torch.bincount(class_map.reshape(-1), minlength=int(spec["num_classes"]))
        share = {
            _name(classes, c): round(n / class_map.numel(), 4) for c, n in enumerate(counts.tolist()) if n
        }
        lines = ["classes by share of the pixels"]
        lines += [
            f"  {name:<12s} {100 * v:5.1f}%" for name, v in sorted(share.items(), key=lambda kv: -kv[1])
        ]
        return {"pixels": share}, lines, self.draw(image, class_map, int(spec["num_classes"]))


class Segmentation(SceneTraining):
    """Segmentation through the loop's seam: metrics ``miou`` (selects), ``miou_fg``, ``pixel_acc``."""

    name = "segmentation"
    recipe = "segmentation"
    ops = SegmentationTask
