"""Guards of the loop: a NaN/inf loss stops training (:class:`NonFiniteGuard`, without a host sync per
step on CUDA), and SIGINT/SIGTERM stop it at the end of a step with a checkpoint (:class:`StopRequest`).
"""

from __future__ import annotations

import math
import signal
import threading
from typing import Any

import torch

from reslab.errors import ReslabError


class TrainingDiverged(ReslabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class NonFiniteGuard:
    """Detects a NaN/inf loss within one step without stalling the GPU pipeline."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._flag = torch.zeros((), dtype=torch.bool, pin_memory=self.cuda)
        self._event: Any = None
        self._step = -1

    def check(self, loss: torch.Tensor, step: int) -> int | None:
        """Record ``loss`` of ``step``; return the step whose loss was not finite, if any."""
        if not self.cuda:  # CPU: the value is already computed, reading it is free
            return None if math.isfinite(float(loss.detach())) else step
        bad = self.flush()
        self._flag.copy_(~torch.isfinite(loss.detach()), non_blocking=True)
        self._event = torch.cuda.Event()
        self._event.record()
        self._step = step
        return bad

    def flush(self) -> int | None:
        if self._event is None:
            return None
        self._event.synchronize()
        self._event = None
        return self._step if bool(self._flag) else None


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and stops at the end of the step. A second signal
    interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
