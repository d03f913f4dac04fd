"""Detection on the Fashion-MNIST scenes: Faster R-CNN / Mask R-CNN / RetinaNet on a reslab backbone.

:class:`DetectionTask` holds the model operations (build, batch, loss, predict, draw, COCO mAP);
:class:`Detection` is the task the loop trains (:class:`reslab.tasks.scenes.SceneTraining`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from reslab.data.scenes import SceneDataset, Scenes
from reslab.errors import ConfigError
from reslab.models.dense import DETECTORS, create_detector
from reslab.tasks.base import PredictRequest
from reslab.tasks.metrics import DetectionMetric
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


class DetectionTask(SceneOps):
    """Faster R-CNN / Mask R-CNN / RetinaNet on the scenes; metrics COCO mAP (``map_50`` selects)."""

    name = "detection"
    archs = DETECTORS
    metrics = ("map_50", "map", "map_75", "mar_100")
    eval_batch = 16

    @staticmethod
    def create(arch: str, backbone: str, size: int, **kwargs: Any) -> nn.Module:
        """:func:`reslab.models.dense.create_detector` for scenes of ``size`` pixels (no resizing)."""
        return create_detector(arch, backbone, min_size=size, max_size=size, **kwargs)

    def build_model(
        self,
        data: SceneDataset,
        *,
        arch: str = "fasterrcnn",
        backbone: str = "resnet18",
        init_from: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> nn.Module:
        """:func:`reslab.models.dense.create_detector` for ``data``: its classes, channels, statistics and
        image size (``min_size = max_size`` = the scene size: no resizing); ``kwargs`` as there."""
        size = data.config.size
        kwargs.setdefault("min_size", size)
        kwargs.setdefault("max_size", size)
        return create_detector(
            arch,
            backbone,
            num_classes=data.num_classes,
            in_chans=data.in_chans,
            image_mean=data.mean,
            image_std=data.std,
            init_from=init_from,
            **kwargs,
        )

    def batch(
        self,
        scenes: Scenes,
        index: torch.Tensor | Sequence[int],
        *,
        device: torch.device | str = "cpu",
        augment: bool = False,
        generator: torch.Generator | None = None,
        masks: bool = True,
        flips: torch.Tensor | None = None,
    ) -> Batch:
        """Scenes ``index`` as detector input; ``augment`` flips each scene horizontally with probability
        1/2 (boxes and masks with it; the draws come from ``generator``, on the CPU); ``flips`` (bool per
        scene) gives the flips instead."""
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        flip = _flip_mask(len(index), augment, generator, flips)
        images = self._images(scenes, index, flip, device)
        width = images.shape[-1]
        targets = []
        for i, f in zip(index.tolist(), flip.tolist()):
            t = scenes.target(i, masks=masks)
            if f:
                t["boxes"] = torch.stack(
                    [width - t["boxes"][:, 2], t["boxes"][:, 1], width - t["boxes"][:, 0], t["boxes"][:, 3]],
                    1,
                )
                if masks:
                    t["masks"] = t["masks"].flip(-1)
            targets.append({k: v.to(device, non_blocking=True) for k, v in t.items()})
        return Batch(images, targets, index)

    def train_batch(
        self, scenes: Scenes, index: torch.Tensor, *, device: torch.device, flips: torch.Tensor, arch: str
    ) -> Batch:
        """A training batch of a run with head ``arch`` (masks only for Mask R-CNN)."""
        return self.batch(scenes, index, device=device, flips=flips, masks=arch == "maskrcnn")

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The sum of the detector's losses (torchvision's reference recipe) and each part, detached.
        ``model`` must be in train mode."""
        if not model.training:
            raise ConfigError("a detector returns losses only in train mode: call model.train() first")
        parts = model(list(batch.images), batch.targets)
        total = sum(parts.values())
        return total, {k: v.detach() for k, v in parts.items()}

    @torch.no_grad()
    def predict(self, model: nn.Module, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Detections for float images in [0, 1] (B, C, H, W): torchvision's list of dicts."""
        was = model.training
        model.eval()
        try:
            return model(list(images))
        finally:
            model.train(was)

    @staticmethod
    def draw(
        image: torch.Tensor,
        prediction: dict[str, torch.Tensor],
        classes: Sequence[str],
        *,
        score_threshold: float = 0.5,
    ) -> torch.Tensor:
        """``image`` (C, H, W; uint8, or float in [0, 1]) as RGB uint8 (3, H, W) with the detections
        scoring at least ``score_threshold`` drawn on it, one colour per class: boxes labelled "class
        score" (ground truth, without ``scores``: every box, labelled with its class alone; :func:`box_texts`)
        and, for Mask R-CNN, their masks (``torchvision.utils.draw_bounding_boxes`` /
        ``draw_segmentation_masks``)."""
        from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

        rgb = _rgb(image)
        keep, text = box_texts(prediction, classes, score_threshold)
        labels = prediction["labels"].detach().cpu()[keep].tolist()
        colors = [PALETTE[(c - 1) % len(PALETTE)] for c in labels]
        if "masks" in prediction and keep.any():
            masks = prediction["masks"].detach().cpu()[keep]
            masks = masks[:, 0] if masks.ndim == 4 else masks
            rgb = draw_segmentation_masks(rgb, masks > 0.5, alpha=0.4, colors=colors)
        boxes = prediction["boxes"].detach().cpu()[keep]
        return draw_bounding_boxes(rgb, boxes, labels=text, colors=colors, width=1) if len(text) else rgb

    def evaluate(
        self,
        model: nn.Module,
        scenes: Scenes,
        *,
        device: torch.device | str = "cpu",
        batch_size: int = 16,
        per_class: bool = False,
    ) -> dict[str, Any]:
        """COCO mAP of ``model`` on every scene of ``scenes``: ``map``, ``map_50``, ``map_75``, ``mar_100``
        (and ``mask_*`` for Mask R-CNN); ``per_class``: also ``ap`` and ``ap_50``, one value per class
        label (index 0, the background, NaN)."""
        with_masks = spec_of(model)["arch"] == "maskrcnn"
        metric = DetectionMetric(masks=with_masks, per_class=per_class)
        for lo in range(0, len(scenes), batch_size):
            batch = self.batch(
                scenes, range(lo, min(lo + batch_size, len(scenes))), device=device, masks=with_masks
            )
            metric.update(self.predict(model, batch.images), batch.targets)
        return metric.compute()

    def evaluate_per_class(
        self, model: nn.Module, scenes: Scenes, classes: Sequence[str], *, device: Any, batch_size: int
    ) -> dict[str, Any]:
        """:meth:`evaluate` with ``per_class``: ``{"ap_50", "ap"}`` per class name (background left out)."""
        r = self.evaluate(model, scenes, device=device, batch_size=batch_size, per_class=True)
        per = {"ap_50": r.pop("ap_50"), "ap": r.pop("ap")}
        r["per_class"] = {
            classes[c]: {k: _num(v[c]) if c < len(v) else None for k, v in per.items()}
            for c in range(1, len(classes))
        }
        return r

    def found(
        self, model: nn.Module, image: torch.Tensor, classes: Sequence[str], request: PredictRequest
    ) -> tuple[dict[str, Any], list[str], torch.Tensor]:
        """What ``reslab predict`` reports of one uint8 image (C, H, W): the detections scoring at least
        ``request.score_threshold`` (class, label, score, box), as JSON and text, and the image drawn."""
        device = next(model.parameters()).device
        pred = {
            k: v.cpu() for k, v in self.predict(model, image.to(device).float().div(255)[None])[0].items()
        }
        threshold = request.score_threshold
        keep = pred["scores"] >= threshold
        found = [
            {"class": _name(classes, int(c)), "label": int(c), "score": round(float(s), 4),
             "box": [round(float(v), 1) for v in b]}
            for c, s, b in zip(pred["labels"][keep], pred["scores"][keep], pred["boxes"][keep])
        ]  # fmt: skip
        lines = [f"{len(found)} detections (score >= {threshold:g})"]
        lines += [
            f"  {d['class']:<12s} {d['score']:.3f}  [{', '.join(f'{v:g}' for v in d['box'])}]" for d in found
        ]
        return {"detections": found}, lines, self.draw(image, pred, classes, score_threshold=threshold)


class Detection(SceneTraining):
    """Detection through the loop's seam: metrics ``map_50`` (selects), ``map``, ``map_75``, ``mar_100``
    (Mask R-CNN adds ``mask_map_50``, ``mask_map``)."""

    name = "detection"
    recipe = "detection"
    ops = DetectionTask


def box_texts(
    boxes: dict[str, torch.Tensor], classes: Sequence[str], score_threshold: float = 0.5
) -> tuple[torch.Tensor, list[str]]:
    """(which boxes to draw, their labels). Detections (with ``scores``): those scoring at least
    ``score_threshold``, labelled "class score"; ground truth (no ``scores``): every box, labelled with
    its class alone (a true box has no score to show)."""
    labels = boxes["labels"].detach().cpu()
    if "scores" not in boxes:
        return torch.ones(len(labels), dtype=torch.bool), [_name(classes, int(c)) for c in labels]
    scores = boxes["scores"].detach().cpu()
    keep = scores >= score_threshold
    return keep, [f"{_name(classes, int(c))} {float(v):.2f}" for c, v in zip(labels[keep], scores[keep])]
