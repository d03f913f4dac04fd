"""Tasks beyond still-image classification, each behind the same small interface the training engine calls.

A :class:`Task` bundles what differs between tasks: the default model (a registered name and keyword
arguments) and data, how training batches are made, the loss, and the evaluation with its headline metric.
Everything else (optimizer, schedule, checkpoints, resume, logging) is the engine's and is shared.

- ``"video"`` (:mod:`reslab.tasks.video`): Moving Fashion-MNIST clips -> 40 classes (garment x direction),
  3D / (2+1)D / 2D-per-frame ResNets; metric: test accuracy (%).
- ``"super-resolution"`` (:mod:`reslab.tasks.sr`): bicubic-downsampled photographs -> x2 / x4 images,
  SRResNet / EDSR-baseline; metric: PSNR (dB, Y channel) on the held-out photographs.

Dependencies: ``train -> tasks -> data / models / metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reslab.errors import ConfigError


@dataclass(frozen=True)
class Task:
    """What the engine needs to train and evaluate one kind of model.

    - ``load_data(data_dir=None, download=False, **options) -> data`` (the task's data object);
    - ``train_loader(data, batch_size, *, device, seed, **options)``: an object with ``batches()``
      (endless (input, target) batches on ``device``), ``state_dict()`` and ``load_state_dict()`` (exact
      resume);
    - ``loss(output, target) -> scalar tensor``;
    - ``evaluate(model, data, *, device, batch_size) -> dict[str, float]`` on the test split, including
      ``metric``; ``higher_is_better`` says which way "best" goes.
    - ``describe(data) -> dict``: JSON values for checkpoint metadata (what ``predict`` and reports need:
      sizes, normalization, classes or scale, image names, the data's source and checksum).
    - ``model_task``: the registry's task of the models it can train (``model_info(name)["task"]``).
    """

    name: str
    model_task: str
    default_model: str
    default_model_kwargs: dict[str, Any]
    default_data: str
    metric: str
    higher_is_better: bool
    load_data: Callable[..., Any]
    train_loader: Callable[..., Any]
    loss: Callable[..., Any]
    evaluate: Callable[..., dict[str, float]]
    describe: Callable[[Any], dict[str, Any]]
    aliases: tuple[str, ...] = ()

    def check_model(self, name: str) -> None:
        """A one-line error unless the registered model ``name`` is one this task trains."""
        from reslab.models import model_info

        kind = model_info(name)["task"]
        if kind != self.model_task:
            raise ConfigError(f"task {self.name!r} trains {self.model_task} models; {name!r} is {kind}")


def get_task(name: str) -> Task:
    """The task called ``name`` (``"video"``, ``"super-resolution"`` or ``"sr"``)."""
    from reslab.tasks.sr import TASK as SR
    from reslab.tasks.video import TASK as VIDEO

    for task in (VIDEO, SR):
        if name == task.name or name in task.aliases:
            return task
    raise ConfigError(f"unknown task {name!r}; choose from video, super-resolution")


__all__ = ["Task", "get_task"]
