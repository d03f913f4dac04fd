"""The grid behind a loss landscape (:mod:`reslab.analysis.landscape`): its axes, the loss and error at
every point along the directions, and the state that lets an interrupted grid be continued.

A :class:`Grid` is saved atomically after every row to ``landscape_<label>.npz`` (NaN where not yet
computed) with the settings that made it, and its directions to ``directions_<label>.pt``; a grid is
continued only under the same settings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reslab._io import torch_load, torch_save
from reslab.analysis._capture import bn_mode
from reslab.analysis.common import evaluate, save_npz
from reslab.analysis.directions import Direction, Perturbation, line_direction, random_direction
from reslab.analysis.targets import EvalData
from reslab.errors import ConfigError, ReslabError


def axis(resolution: int, lo: float, hi: float) -> np.ndarray:
    """``resolution`` evenly spaced points; exactly 0 is included when it lies on the grid."""
    a = np.linspace(lo, hi, resolution)
    if lo < 0 < hi:
        i = int(np.argmin(np.abs(a)))
        if abs(a[i]) < 1e-9 * max(abs(lo), abs(hi)):
            a[i] = 0.0
    return a


@dataclass
class Grid:
    """The axes of one landscape, its loss and error (NaN where not computed yet), the settings that
    made it (``meta``: a saved grid is continued only under the same settings) and where it is saved
    (``state_path``; ``None``: nowhere)."""

    alphas: np.ndarray
    betas: np.ndarray | None
    loss: np.ndarray
    error: np.ndarray
    meta: dict[str, Any]
    state_path: Path | None = None

    @classmethod
    def new(
        cls,
        mode: str,
        resolution: int,
        span: float,
        line_margin: float,
        other: nn.Module | None,
        meta: dict[str, Any],
        state_path: Path | None = None,
    ) -> Grid:
        """The checked settings as axes and an empty (all-NaN) grid."""
        if mode not in ("plane", "direction", "line"):
            raise ConfigError(f"landscape mode must be plane, direction or line, got {mode!r}")
        if resolution < 2:
            raise ConfigError("--resolution must be at least 2")
        if mode == "line":
            if other is None:
                raise ConfigError("a line landscape needs a second checkpoint")
            step = 1.0 / (resolution - 1)
            extra = round(line_margin / step)
            alphas = np.arange(-extra, resolution + extra) * step
            betas = None
        else:
            alphas = axis(resolution, -span, span)
            betas = alphas.copy() if mode == "plane" else None
        shape = (len(alphas), len(betas)) if betas is not None else (len(alphas),)
        return cls(alphas, betas, np.full(shape, np.nan), np.full(shape, np.nan), meta, state_path)

    @property
    def directions_path(self) -> Path | None:
        """``directions_<label>.pt`` beside ``landscape_<label>.npz``."""
        if self.state_path is None:
            return None
        name = self.state_path.name.replace("landscape_", "directions_")
        return self.state_path.with_name(name).with_suffix(".pt")

    def row(self, i: int) -> list[tuple[tuple[int, ...], list[float]]]:
        """The points of row ``i``: (index into ``loss``, coefficients of the directions)."""
        if self.betas is None:
            return [((i,), [self.alphas[i]])]
        return [((i, j), [self.alphas[i], self.betas[j]]) for j in range(len(self.betas))]

    def load(self) -> bool:
        """Continue the grid saved at ``state_path`` if there is one (made with the same settings)."""
        if self.state_path is None or not self.state_path.exists():
            return False
        with np.load(self.state_path, allow_pickle=False) as z:
            old = json.loads(str(z["meta"]))
            if old != json.loads(json.dumps(self.meta)):
                raise ReslabError(
                    f"{self.state_path} holds a landscape with other settings ({old}); use another --out to start anew"
                )
            self.loss, self.error = z["loss"].copy(), z["error"].copy()
        return True

    def save(self) -> None:
        if self.state_path is not None:
            save_npz(
                self.state_path,
                alphas=self.alphas,
                betas=np.asarray([] if self.betas is None else self.betas),
                loss=self.loss,
                error=self.error,
                meta=json.dumps(self.meta),
            )

    def fill(
        self,
        model: nn.Module,
        data: EvalData,
        dirs: list[Direction],
        *,
        batch_size: int,
        label: str,
        progress: bool,
    ) -> float:
        """Evaluate the missing points of ``model`` moved along ``dirs``, saving the grid after every
        row; returns the loss at the origin."""
        from tqdm.auto import tqdm

        todo = int(np.isnan(self.loss).sum())
        bar = tqdm(
            total=self.loss.size,
            initial=self.loss.size - todo,
            desc=f"landscape {label}",
            disable=not progress,
            leave=False,
        )
        dev = next(model.parameters()).device
        pert = Perturbation(model, list(dirs[0]))
        dirs = [{k: v.to(dev) for k, v in d.items()} for d in dirs]
        try:
            with bn_mode(model, "eval"):
                origin_loss = _eval_at(pert, [0.0] * len(dirs), dirs, model, data, batch_size)[0]
                for i in range(len(self.alphas)):
                    for index, coeffs in self.row(i):
                        if np.isnan(self.loss[index]):
                            self.loss[index], self.error[index] = _eval_at(
                                pert, coeffs, dirs, model, data, batch_size
                            )
                            bar.update()
                    self.save()
        finally:
            pert.restore()
            bar.close()
        return origin_loss


def load_or_draw_directions(
    mode: str, model: nn.Module, other: nn.Module | None, seed: int, path: Path | None, resume: bool
) -> list[Direction]:
    """When resuming, the directions an earlier invocation saved at ``path``; else new ones (saved
    there): the line from ``model`` to ``other``, or one/two filter-normalized random directions."""
    if resume and path is not None and path.exists():
        saved = torch_load(path)
        return [saved[k] for k in sorted(saved)]
    if mode == "line":
        assert other is not None
        dirs = [line_direction(model, other)]
    else:
        g = torch.Generator().manual_seed(int(seed))
        dirs = [random_direction(model, g) for _ in range(2 if mode == "plane" else 1)]
    if path is not None:
        torch_save({f"d{i}": d for i, d in enumerate(dirs)}, path)
    return dirs


def _eval_at(
    pert: Perturbation,
    coeffs: Sequence[float],
    dirs: Sequence[Direction],
    model: nn.Module,
    data: EvalData,
    batch_size: int,
) -> tuple[float, float]:
    pert.set(coeffs, dirs)
    loss, err = evaluate(model, data, batch_size)
    return (loss if np.isfinite(loss) else float("inf")), err
