"""Running sums of the training loss and error, kept where they are cheapest.

The step adds to :class:`DeviceSums` (device tensors: no host sync in the step); :meth:`Meters.sync`
moves them, summed over the ranks, into two host-side :class:`Window` s: the ``train_log.csv`` window
(reset at every log row) and the evaluation window (reset at every evaluation; it also times training,
so ``images_per_s`` excludes evaluation and checkpoints). Both windows are part of the checkpoint, so a
resumed run logs exactly what the uninterrupted run logs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from reslab.tasks.base import Dist


@dataclass
class Window:
    """Sums over the training samples since the window began: summed per-sample loss, wrong predictions,
    images, and (evaluation window) the training seconds spent."""

    loss_sum: float = 0.0
    errors: float = 0.0
    images: int = 0
    seconds: float = 0.0

    def add(self, loss_sum: float, errors: float, images: int) -> None:
        self.loss_sum += loss_sum
        self.errors += errors
        self.images += images

    @property
    def mean_loss(self) -> float:
        """Mean per-sample loss (NaN for an empty window)."""
        return self.loss_sum / self.images if self.images else float("nan")

    @property
    def error(self) -> float:
        """Error in percent (0 for an empty window)."""
        return 100.0 * self.errors / max(self.images, 1)

    def reset(self) -> None:
        self.loss_sum, self.errors, self.images, self.seconds = 0.0, 0.0, 0, 0.0

    def state_dict(self) -> list[float]:
        """The checkpoint's form: ``[loss_sum, errors, images, seconds]``."""
        return [self.loss_sum, self.errors, self.images, self.seconds]

    @classmethod
    def from_state(cls, state: list[Any]) -> Window:
        """From :meth:`state_dict` (a checkpoint's three-field log window has no ``seconds``)."""
        loss_sum, errors, images, *rest = state
        return cls(loss_sum, errors, images, *rest[:1])


class DeviceSums:
    """Loss and error sums on the device between host syncs (one small tensor, zeroed at each sync)."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)
        self.n = 0

    @torch.no_grad()
    def add(self, loss: torch.Tensor, errors: torch.Tensor, n: int) -> None:
        """``loss``: the batch's mean loss; ``errors``: its count of wrong predictions; ``n``: its size."""
        self.sums[0] += loss.detach() * n  # a sum over samples: the same for any world size
        self.sums[1] += errors
        self.n += n

    def reduce(self, dist: Dist) -> tuple[float, float, int] | None:
        """``(loss_sum, errors, n)`` summed over the ranks (a collective: every rank calls it at the same
        steps), then zeroed; ``None`` when nothing was added since the last call."""
        if not self.n:
            return None
        if dist.enabled:
            both = torch.cat([self.sums, self.sums.new_tensor([self.n])])
            torch.distributed.all_reduce(both)
            loss_sum, errors, n = both.tolist()
        else:
            (loss_sum, errors), n = self.sums.tolist(), self.n
        self.sums.zero_()
        self.n = 0
        return loss_sum, errors, int(n)


@dataclass
class Meters:
    """The loop's running sums: the device side, the log window, the evaluation window and its clock
    (:meth:`pause` / :meth:`resume` around evaluation and checkpoints)."""

    device: DeviceSums
    log: Window = field(default_factory=Window)
    eval: Window = field(default_factory=Window)
    started: float = field(default_factory=time.perf_counter)  # the current stretch of training time

    def add(self, loss: torch.Tensor, errors: torch.Tensor, n: int) -> None:
        self.device.add(loss, errors, n)

    def sync(self, dist: Dist) -> None:
        """Move the device sums, reduced over the ranks, into both windows."""
        sums = self.device.reduce(dist)
        if sums is not None:
            self.log.add(*sums)
            self.eval.add(*sums)

    def pause(self) -> None:
        """End a stretch of training time (before an evaluation or a checkpoint)."""
        self.eval.seconds += time.perf_counter() - self.started

    def resume(self) -> None:
        """Start a stretch of training time."""
        self.started = time.perf_counter()

    def images_per_s(self) -> float:
        """Training images per second of the evaluation window so far."""
        dt = time.perf_counter() - self.started + self.eval.seconds
        return self.eval.images / dt if dt > 0 else 0.0

    def state_dict(self) -> dict[str, list[float]]:
        return {"win_log": self.log.state_dict(), "win_eval": self.eval.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log = Window.from_state(list(state["win_log"]))
        self.eval = Window.from_state(list(state["win_eval"]))
