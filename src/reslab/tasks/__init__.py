"""Tasks beyond still-image classification on reslab networks: what a training loop needs, task by task.

- ``"detection"`` / ``"segmentation"`` (:mod:`reslab.tasks.dense`): :class:`DetectionTask` /
  :class:`SegmentationTask` on the Fashion-MNIST scenes: data, model, batch, loss, prediction, evaluation.
- ``"video"`` (:mod:`reslab.tasks.video`: Moving Fashion-MNIST clips, 3D ResNets) and
  ``"super-resolution"`` / ``"sr"`` (:mod:`reslab.tasks.sr`: photographs, SRResNet / EDSR): a
  :class:`~reslab.tasks.base.Task` each: default model and data, a resumable loader, loss, evaluation.
- :mod:`reslab.tasks.metrics`: COCO mAP (torchmetrics + pycocotools), mIoU, PSNR / SSIM (scikit-image).

Dependencies: ``reslab.tasks`` uses ``reslab.data`` and ``reslab.models``; ``reslab.train`` may use it.
"""

from reslab.errors import ConfigError
from reslab.tasks.base import Task
from reslab.tasks.dense import TASKS, Batch, DetectionTask, SegmentationTask
from reslab.tasks.dense import get_task as _dense_task
from reslab.tasks.metrics import DetectionMetric, SegmentationMetric, confusion_matrix, iou_from_confusion
from reslab.tasks.sr import TASK as SUPER_RESOLUTION
from reslab.tasks.video import TASK as VIDEO

LOADER_TASKS = {"video": VIDEO, "super-resolution": SUPER_RESOLUTION, "sr": SUPER_RESOLUTION}


def get_task(name: str) -> DetectionTask | SegmentationTask | Task:
    """The task called ``name``: ``"detection"``, ``"segmentation"``, ``"video"``, ``"super-resolution"``."""
    if name in TASKS:
        return _dense_task(name)
    if name in LOADER_TASKS:
        return LOADER_TASKS[name]
    names = ", ".join([*TASKS, "video", "super-resolution"])
    raise ConfigError(f"unknown task {name!r}; choose from {names} (or classification)")


__all__ = [
    "LOADER_TASKS",
    "TASKS",
    "Batch",
    "DetectionMetric",
    "DetectionTask",
    "SegmentationMetric",
    "SegmentationTask",
    "Task",
    "confusion_matrix",
    "get_task",
    "iou_from_confusion",
]
