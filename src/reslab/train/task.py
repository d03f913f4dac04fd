"""The seam between the training loop and what is trained: a :class:`Task`.

The loop (:mod:`reslab.train.engine`) knows schedules, optimizers, meters, checkpoints and ranks; it
knows nothing about images, labels or metrics. Everything specific to a task sits behind the members
below, and a new task plugs in by providing them, without touching the loop:

- **data**: ``loader`` (training batches with the :class:`reslab.data.DeviceLoader` interface: ``len`` =
  batches per epoch, ``batches()``, ``batch_size`` (per rank), ``state_dict()`` / ``load_state_dict()``
  with ``epoch`` and ``position``: exact resume), ``info`` (JSON stored in every checkpoint: at least
  ``task`` and ``dataset``; ``input_size``, ``mean``, ``std``, ``classes`` where the task has them, and
  whatever evaluation, prediction and export need to rebuild the preprocessing) and :meth:`Task.describe`;
- **model**: :meth:`Task.build_model` (the raw module whose weights are saved);
- **step**: :meth:`Task.forward` (one batch -> mean loss, count of wrong predictions, batch size;
  called under the run's autocast); ``counts_errors`` says whether that count means anything (if not,
  the ``error`` / ``train_error`` columns of ``train_log.csv`` / ``metrics.csv`` stay empty);
- **evaluation**: ``eval_splits``, ``metric_names`` and :meth:`Task.evaluate` (one split -> one value per
  name, reduced over the ranks); ``metrics.csv`` has a column ``<split>_<metric>`` for each
  (:func:`reslab.train.rundir.metrics_columns`); classification's one metric is ``error`` (percent);
- **model selection**: :meth:`Task.select` (which number picks ``checkpoints/best``), compared by the
  loop in the direction ``higher_is_better`` (of the first, primary metric), and ``selection`` (how the
  summary names the rule).

Optional: ``weights_metadata`` (a dict, read after :meth:`Task.build_model`): extra top-level metadata of
every weights file (the dense tasks store ``spec`` there, from which :func:`reslab.models.dense.load_dense`
rebuilds the model).

A task is made from the config and the :class:`Runtime` (where and how the run executes) by
:func:`reslab.train.engine.make_task`, which dispatches on ``cfg.task``:
:class:`reslab.train.classification.Classification`, :class:`reslab.train.dense_task.DenseTraining`
(detection, segmentation) and ``reslab.train.loader_task.LoaderTraining`` (video, super-resolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from reslab.train.config import TrainConfig
from reslab.train.distributed import Dist


@dataclass(frozen=True)
class Runtime:
    """Where and how a run executes: the device, the ranks, the memory format and the autocast dtype
    (``None``: fp32)."""

    device: torch.device
    dist: Dist
    channels_last: bool
    amp_dtype: torch.dtype | None


class Task(Protocol):
    """What the loop needs from a task (see the module docstring)."""

    loader: Any
    info: dict[str, Any]
    eval_splits: tuple[str, ...]
    metric_names: tuple[str, ...]
    higher_is_better: bool
    counts_errors: bool
    selection: str

    def describe(self) -> str:
        """One line: the data (for the first progress line)."""
        ...

    def build_model(self, cfg: TrainConfig, *, init: bool) -> nn.Module:
        """The model to train; ``init``: a fresh run (load ``cfg.init_from``), else a resume."""
        ...

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(mean loss, wrong predictions, batch size)`` of one training batch; the loss is the one
        to differentiate, the count stays on the device (a zero tensor when not ``counts_errors``)."""
        ...

    def evaluate(self, split: str, model: nn.Module) -> dict[str, float]:
        """``{name: value for name in metric_names}`` of ``model`` on ``split`` (every rank calls it; the
        result is reduced over the ranks)."""
        ...

    def select(self, metrics: dict[str, dict[str, float]], train_error: float | None) -> tuple[str, float]:
        """``(name, value)`` deciding ``checkpoints/best`` at an evaluation, from this evaluation's
        ``metrics`` (split -> name -> value) and the training error of the interval (``None`` when not
        ``counts_errors``); the loop keeps the best value in the direction of ``higher_is_better``."""
        ...
