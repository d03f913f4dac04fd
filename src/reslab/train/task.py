"""The seam between the training loop and what is trained: a :class:`Task`.

The loop (:mod:`reslab.train.engine`) knows schedules, optimizers, meters, checkpoints and ranks; it
knows nothing about images, labels or metrics. Everything specific to a task sits behind the five
members below, and a new task (detection, segmentation, video, super-resolution) plugs in by providing
them, without touching the loop:

- **data**: ``loader`` (training batches with the :class:`reslab.data.DeviceLoader` interface: ``len``,
  ``batches()``, ``batch_size``, ``state_dict()`` / ``load_state_dict()``), ``info`` (JSON stored in
  every checkpoint: what evaluation, prediction and export need to rebuild the preprocessing) and
  :meth:`Task.describe`;
- **model**: :meth:`Task.build_model` (the raw module whose weights are saved);
- **step**: :meth:`Task.forward` (one batch -> mean loss, count of wrong predictions, batch size;
  called under the run's autocast);
- **evaluation**: ``eval_splits`` and :meth:`Task.evaluate` (one split -> error in percent, reduced over
  the ranks);
- **model selection**: :meth:`Task.select` (which number picks ``checkpoints/best``; lower is better)
  and ``selection`` (how the summary names the rule).

A task is made from the config and the :class:`Runtime` (where and how the run executes) by
:func:`reslab.train.engine.make_task`, the one line a new task adds itself to. Today there is one:
:class:`reslab.train.classification.Classification`.
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
    selection: str

    def describe(self) -> str:
        """One line: the data (for the first progress line)."""
        ...

    def build_model(self, cfg: TrainConfig, *, init: bool) -> nn.Module:
        """The model to train; ``init``: a fresh run (load ``cfg.init_from``), else a resume."""
        ...

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(mean loss, wrong predictions, batch size)`` of one training batch; the loss is the one
        to differentiate, the count stays on the device."""
        ...

    def evaluate(self, split: str, model: nn.Module) -> float:
        """Error in percent of ``model`` on ``split`` (every rank calls it; the result is reduced)."""
        ...

    def select(self, errors: dict[str, float], train_error: float) -> tuple[str, float]:
        """``(metric name, value)`` deciding ``checkpoints/best`` at an evaluation (lower is better)."""
        ...
