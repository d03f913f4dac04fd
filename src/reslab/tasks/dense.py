"""Detection and segmentation on the Fashion-MNIST scenes: what a training loop needs, task by task.

A task bundles the four things that differ between classification, detection and segmentation, so one
training loop serves all three::

    task = get_task("detection")                        # or "segmentation"
    data = task.load_data(train_size=4000, test_size=1000, seed=0)
    model = task.build_model(data, arch="fasterrcnn", backbone="resnet18", init_from="runs/fmnist")
    for index in batches_of_indices:                    # the loop's own seeded order
        batch = task.batch(data.train, index, device=device, augment=True, generator=g)
        loss, parts = task.loss(model, batch)           # parts: detached tensors, for the log
        ...
    metrics = task.evaluate(model, data.test, device=device)   # {"map": ..., "map_50": ...}
    metrics[task.primary_metric]                        # the number "best" is chosen by (higher is better)

``model.spec`` (see :mod:`reslab.models.dense`) rebuilds the model: ``task.rebuild(spec)``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reslab.data.scenes import SceneConfig, SceneDataset, Scenes, load_scenes
from reslab.errors import ConfigError
from reslab.models.dense import DETECTORS, SEGMENTERS, build_from_spec, create_detector, create_segmenter
from reslab.models.weights import unwrap
from reslab.tasks.metrics import DetectionMetric, SegmentationMetric

__all__ = ["TASKS", "Batch", "DetectionTask", "SegmentationTask", "get_task", "spec_of"]


@dataclasses.dataclass
class Batch:
    """Images on the device and their targets: float (B, C, H, W) in [0, 1] (detection: the detector
    normalizes) or normalized (segmentation); targets a list of torchvision target dicts (detection) or
    a class map int64 (B, H, W) (segmentation)."""

    images: torch.Tensor
    targets: list[dict[str, torch.Tensor]] | torch.Tensor
    index: torch.Tensor


def spec_of(model: nn.Module) -> dict[str, Any]:
    """``model.spec`` of a dense model, also through DDP / ``torch.compile`` wrappers."""
    spec = getattr(unwrap(model), "spec", None)
    if not isinstance(spec, dict) or spec.get("task") not in TASKS:
        raise ConfigError("not a detection / segmentation model of reslab.models.dense (it has no .spec)")
    return spec


# ten saturated, distinguishable colours, one per Fashion-MNIST class (Trubetskoy's "20 distinct colours")
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip


def _rgb(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) uint8 or [0, 1] float -> RGB uint8 (3, H, W) on the CPU (grey repeated)."""
    x = image.detach().cpu()
    if x.is_floating_point():
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ConfigError(f"expected an image (1 or 3, H, W), got {tuple(image.shape)}")
    return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x


def _flip_mask(
    n: int, augment: bool, generator: torch.Generator | None, flips: torch.Tensor | None = None
) -> torch.Tensor:
    if flips is not None:  # drawn by the caller (a training loader's plan)
        flips = torch.as_tensor(flips, dtype=torch.bool).reshape(-1).cpu()
        if len(flips) != n:
            raise ConfigError(f"flips holds {len(flips)} values for {n} scenes")
        return flips
    if not augment:
        return torch.zeros(n, dtype=torch.bool)
    return torch.rand(n, generator=generator) < 0.5


class _SceneTask:
    name: ClassVar[str]
    archs: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]

    def load_data(
        self,
        train_size: int = 4000,
        test_size: int = 1000,
        *,
        seed: int = 0,
        config: SceneConfig | None = None,
        data_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> SceneDataset:
        """The Fashion-MNIST scenes (:func:`reslab.data.scenes.load_scenes`), the data of both tasks."""
        return load_scenes(
            train_size, test_size, seed=seed, config=config, data_dir=data_dir, cache_dir=cache_dir, **kwargs
        )

    def rebuild(self, spec: dict[str, Any]) -> nn.Module:
        """The model of ``spec`` (as ``model.spec`` / a checkpoint holds it), freshly initialized."""
        if spec.get("task") != self.name:
            raise ConfigError(f"the checkpoint is a {spec.get('task')} model, not {self.name}")
        return build_from_spec(spec)

    @staticmethod
    def _images(
        scenes: Scenes, index: torch.Tensor, flip: torch.Tensor, device: torch.device | str
    ) -> torch.Tensor:
        x = scenes.images[index].to(device, non_blocking=True).float().div_(255)
        if flip.any():
            x[flip.to(x.device)] = x[flip.to(x.device)].flip(-1)
        return x


class DetectionTask(_SceneTask):
    """Faster R-CNN / Mask R-CNN / RetinaNet on the scenes; metrics COCO mAP (``map_50`` selects)."""

    name = "detection"
    archs = DETECTORS
    primary_metric = "map_50"

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
        score" and, for Mask R-CNN, their masks (``torchvision.utils.draw_bounding_boxes`` /
        ``draw_segmentation_masks``)."""
        from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

        rgb = _rgb(image)
        keep = prediction["scores"].detach().cpu() >= score_threshold
        labels = prediction["labels"].detach().cpu()[keep].tolist()
        scores = prediction["scores"].detach().cpu()[keep].tolist()
        colors = [PALETTE[(c - 1) % len(PALETTE)] for c in labels]
        if "masks" in prediction and keep.any():
            masks = prediction["masks"].detach().cpu()[keep]
            masks = masks[:, 0] if masks.ndim == 4 else masks
            rgb = draw_segmentation_masks(rgb, masks > 0.5, alpha=0.4, colors=colors)
        text = [f"{classes[c]} {s:.2f}" for c, s in zip(labels, scores)]
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


class SegmentationTask(_SceneTask):
    """DeepLabV3 / FCN on the scenes' class maps; metric mIoU (``miou`` selects)."""

    name = "segmentation"
    archs = SEGMENTERS
    primary_metric = "miou"
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


TASKS: dict[str, type[_SceneTask]] = {"detection": DetectionTask, "segmentation": SegmentationTask}


def get_task(name: str) -> DetectionTask | SegmentationTask:
    """The task called ``name`` (``"detection"`` or ``"segmentation"``)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose from {', '.join(TASKS)} (or classification)")
    return TASKS[name]()  # type: ignore[return-value]
