"""Tasks: what a training loop trains, task by task, behind one seam (:class:`~reslab.tasks.base.Task`).

Each task is one module and one line of :data:`TASKS`, the registry the engine, the config's users and
the command line read:

- ``"classification"`` (:mod:`reslab.tasks.classification`): images to labels, and ``reslab eval`` of a
  classifier.
- ``"detection"`` / ``"segmentation"`` (:mod:`reslab.tasks.detection`, :mod:`reslab.tasks.segmentation`,
  sharing :mod:`reslab.tasks.scenes`): the Fashion-MNIST scenes, torchvision's heads on reslab backbones.
- ``"video"`` (:mod:`reslab.tasks.video`: Moving Fashion-MNIST clips, 3D ResNets) and
  ``"super-resolution"`` / ``"sr"`` (:mod:`reslab.tasks.super_resolution`: photographs, SRResNet / EDSR),
  sharing :class:`~reslab.tasks.loader_task.LoaderTask` (:mod:`reslab.tasks.upscaling`: the upscaler).
- ``"style"`` (:mod:`reslab.tasks.style`): Johnson et al.'s feed-forward style transfer, trained with the
  perceptual loss of :mod:`reslab.tasks.perceptual` (shared with ``reslab stylize``), also a LoaderTask.
- ``"face"`` (:mod:`reslab.tasks.face`): face embeddings with margin heads, verified on unseen identities.
- ``"rl"`` (:mod:`reslab.tasks.rl`): reinforcement learning, reslab's encoders inside stable-baselines3's
  DQN and PPO agents on MinAtar and Atari games (the task drives SB3's own loop).
- :mod:`reslab.tasks.base`: the :class:`~reslab.tasks.base.Task` protocol, the
  :class:`~reslab.tasks.base.Runtime` the loop hands a task, and what every task shares.
- :mod:`reslab.tasks.metrics`: COCO mAP (torchmetrics + pycocotools), mIoU, PSNR / SSIM (scikit-image).

Dependencies: ``reslab.tasks`` uses ``reslab.config``, ``reslab.data`` and ``reslab.models``;
``reslab.train`` may use it, never the other way.
"""

import os
from typing import Any

from reslab.errors import ConfigError
from reslab.tasks.base import EvalRequest, PredictRequest, Runtime, Task, checkpoint_task
from reslab.tasks.classification import Classification
from reslab.tasks.detection import Detection, DetectionTask
from reslab.tasks.face import Face
from reslab.tasks.loader_task import LoaderTask
from reslab.tasks.metrics import DetectionMetric, SegmentationMetric, confusion_matrix, iou_from_confusion
from reslab.tasks.rl import RL
from reslab.tasks.scenes import Batch, SceneOps, SceneTraining
from reslab.tasks.segmentation import Segmentation, SegmentationTask
from reslab.tasks.style import StyleTransfer
from reslab.tasks.super_resolution import SuperResolution
from reslab.tasks.video import Video

# The tasks behind the loop's seam, by name (``"sr"``: an alias): the one registry.
TASKS: dict[str, type] = {
    "classification": Classification,
    "detection": Detection,
    "segmentation": Segmentation,
    "video": Video,
    "super-resolution": SuperResolution,
    "sr": SuperResolution,
    "style": StyleTransfer,
    "face": Face,
    "rl": RL,
}
LOADER_TASKS: dict[str, type[LoaderTask]] = {k: v for k, v in TASKS.items() if issubclass(v, LoaderTask)}
SCENE_TASKS: dict[str, type[SceneTraining]] = {k: v for k, v in TASKS.items() if issubclass(v, SceneTraining)}


def task_class(name: str) -> type:
    """The task called ``name`` (one line naming the registered ones otherwise)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


def refuse_task(checkpoint: str | os.PathLike, command: str) -> None:
    """One line (:class:`ConfigError`) if the task of the run or checkpoint does not support ``command``
    (``"predict"``, ``"export"``, ``"features"``, ``"analyze"``): its :attr:`~reslab.tasks.base.Task.refuses`."""
    task_class(checkpoint_task(checkpoint)).refuse(command)


def scene_ops(name: str) -> SceneOps:
    """The model operations of scene task ``name`` (``"detection"``, ``"segmentation"``): build, batch,
    loss, predict, draw, evaluate."""
    if name not in SCENE_TASKS:
        raise ConfigError(f"unknown scene task {name!r}; choose from {', '.join(SCENE_TASKS)}")
    return SCENE_TASKS[name].ops()


def image_batches(task: str) -> bool:
    """Whether task ``task`` trains on 4-D image batches (N, C, H, W) alike, where channels-last memory
    pays (``channels_last: auto``): classification; the others' inputs are clips, scenes of lists, patches."""
    return task == "classification"


def run_label(task: str, model: str, dataset: str) -> str:
    """How a run names itself (the default run folder, the curves' title): ``resnet20-fashion-mnist`` for a
    classifier, ``video-video_resnet`` for another task's network."""
    return f"{model}-{dataset}" if task == "classification" else f"{task}-{model}"


def summary_extras(task: str, final: dict[str, Any]) -> dict[str, Any]:
    """What a finished run's ``summary.json`` adds for its task: a classifier's test accuracy (percent)."""
    if task != "classification":
        return {}
    error = final.get("test_error")
    return {"test_accuracy": None if error is None else 100.0 - error}


__all__ = [
    "LOADER_TASKS",
    "SCENE_TASKS",
    "TASKS",
    "Batch",
    "Classification",
    "Detection",
    "DetectionMetric",
    "DetectionTask",
    "EvalRequest",
    "LoaderTask",
    "PredictRequest",
    "Runtime",
    "SceneOps",
    "SceneTraining",
    "Segmentation",
    "SegmentationMetric",
    "SegmentationTask",
    "SuperResolution",
    "Task",
    "Video",
    "confusion_matrix",
    "image_batches",
    "iou_from_confusion",
    "refuse_task",
    "run_label",
    "scene_ops",
    "summary_extras",
    "task_class",
]
