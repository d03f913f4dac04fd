"""Dense prediction tasks on reslab backbones: detection and segmentation on the Fashion-MNIST scenes.

- :func:`get_task` -> :class:`DetectionTask` / :class:`SegmentationTask`: data, model, batch, loss,
  prediction and evaluation of one task, the pieces a training loop calls (see :mod:`reslab.tasks.dense`).
- :mod:`reslab.tasks.metrics`: COCO mAP (torchmetrics + pycocotools) and mIoU.

Dependencies: ``reslab.tasks`` uses ``reslab.data`` and ``reslab.models``; ``reslab.train`` may use it.
"""

from reslab.tasks.dense import TASKS, Batch, DetectionTask, SegmentationTask, get_task
from reslab.tasks.metrics import DetectionMetric, SegmentationMetric, confusion_matrix, iou_from_confusion

__all__ = [
    "TASKS",
    "Batch",
    "DetectionMetric",
    "DetectionTask",
    "SegmentationMetric",
    "SegmentationTask",
    "confusion_matrix",
    "get_task",
    "iou_from_confusion",
]
