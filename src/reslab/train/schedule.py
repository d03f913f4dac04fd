"""The learning-rate schedule: one pure function of the step, no state to save or restore.

``lr_at(step)`` is the learning rate of update number ``step`` (0-based: the first update is step 0).

- ``step``: ``lr * gamma ** k`` where ``k`` counts the milestones ``<= step`` (milestones in iterations,
  or in epochs converted with the number of steps per epoch). The paper's CIFAR recipe: 0.1, divided by
  10 at 32k and 48k iterations; ImageNet: divided by 10 at epochs 30 and 60.
- ``cosine``: from ``lr`` (after warm-up) down to ``min_lr`` at the last step, half a cosine.
- ``linear``: from ``lr`` (after warm-up) linearly down to ``min_lr`` at the last step (with a linear
  warm-up this is the triangular "one-cycle" schedule).
- ``constant``: ``lr``.
- Warm-up (``warmup_iters`` steps, only for models at least ``warmup_min_depth`` layers deep):
  ``linear`` ramps from ``warmup_factor * lr`` to ``lr`` (``lr * (f + (1 - f) * (step + 1) / W)``);
  ``constant`` holds ``warmup_factor * lr`` (the paper's 110-layer warm-up: 0.01 for 400 iterations).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from reslab.config import TrainConfig


def warmup_steps(cfg: TrainConfig, depth: int = 0) -> int:
    """The warm-up ``cfg`` asks for a model of ``depth`` layers (``warmup_min_depth`` gates it)."""
    return cfg.warmup_iters if depth >= cfg.warmup_min_depth else 0


@dataclass(frozen=True)
class Schedule:
    base_lr: float
    total_steps: int
    kind: str = "step"
    milestones: tuple[int, ...] = ()  # in steps
    gamma: float = 0.1
    min_lr: float = 0.0
    warmup_iters: int = 0
    warmup_mode: str = "linear"
    warmup_factor: float = 0.0

    @classmethod
    def from_config(
        cls, cfg: TrainConfig, total_steps: int, steps_per_epoch: int, depth: int = 0
    ) -> Schedule:
        per = 1 if cfg.iterations is not None else steps_per_epoch
        milestones = tuple(round(m * per) for m in cfg.milestones)
        return cls(
            base_lr=cfg.lr,
            total_steps=int(total_steps),
            kind=cfg.schedule,
            milestones=milestones,
            gamma=cfg.gamma,
            min_lr=cfg.min_lr,
            warmup_iters=int(min(warmup_steps(cfg, depth), total_steps)),
            warmup_mode=cfg.warmup_mode,
            warmup_factor=cfg.warmup_factor,
        )

    def describe(self) -> str:
        """The shape in words, for the run's header: ``linear warm-up 200 it from 0 to lr 0.2, then linear
        decay to 0 at step 4200``."""
        lr, end = f"{self.base_lr:g}", self.total_steps
        if self.kind == "step":
            drops = ", ".join(str(m) for m in self.milestones if m < end)
            shape = f"lr {lr}, x{self.gamma:g} at steps {drops}" if drops else f"constant lr {lr}"
        elif self.kind == "constant":
            shape = f"constant lr {lr}"
        else:
            shape = f"{self.kind} decay from lr {lr} to {self.min_lr:g} at step {end}"
        w = self.warmup_iters
        if not w:
            return shape
        start = f"{self.base_lr * self.warmup_factor:g}"
        if self.warmup_mode == "constant":
            warm = f"constant warm-up at lr {start} for {w} steps"
        else:
            warm = f"linear warm-up from {start} to lr {lr} over {w} steps"
        return f"{warm}, then {shape}" if w < end else f"{warm} (the whole run: it ends at the peak lr)"

    def __call__(self, step: int) -> float:
        return self.lr_at(step)

    def warning(self, requested: int) -> str | None:
        """A warning where the warm-up (``requested``: the config's ``warmup_iters`` that apply to this
        model) fills the whole run: it never reaches the decay, and ends at the peak learning rate."""
        if requested and requested >= self.total_steps:
            return (
                f"warning: warmup_iters={requested} fills the whole run of {self.total_steps} iterations: the "
                f"learning rate only rises and ends at its peak ({self.base_lr:g}); set fewer, e.g. --set "
                f"warmup_iters={self.total_steps // 10}"
            )
        return None

    def lr_at(self, step: int) -> float:
        lr = self.base_lr
        w = self.warmup_iters
        if step < w:
            f = self.warmup_factor
            if self.warmup_mode == "constant":
                return lr * f
            return lr * (f + (1.0 - f) * (step + 1) / w)
        if self.kind == "step":
            return lr * self.gamma ** bisect.bisect_right(self.milestones, step)
        if self.kind == "constant":
            return lr
        span = max(1, self.total_steps - w - 1)
        t = min(1.0, (step - w) / span)
        if self.kind == "cosine":
            return self.min_lr + (lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.kind == "linear":
            return lr + (self.min_lr - lr) * t
        raise ValueError(f"unknown schedule {self.kind!r}")
