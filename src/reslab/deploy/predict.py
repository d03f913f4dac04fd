"""Classify image files with a trained run, with exactly the preprocessing the run was trained with
(:mod:`reslab.deploy.preprocess`: the run's input size, normalization and class names, and each image
decoded, converted, resized, matched to the training polarity and normalized accordingly).

A file that cannot be read is reported (one line) and skipped; the others are still classified.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from reslab._device import resolve_device
from reslab.deploy.preprocess import (
    INVERT_MODES,
    ImageReadError,
    InputSpec,
    input_spec,
    load,
    read_image_polarity,
)
from reslab.errors import ConfigError


@dataclasses.dataclass
class Prediction:
    file: str
    top: list[tuple[int, str, float]]  # (class index, class name, probability), best first
    inverted: bool = False  # the image was inverted to the training polarity (see read_image)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "inverted": self.inverted,
            "top": [
                {"rank": r + 1, "index": i, "class": c, "prob": p} for r, (i, c, p) in enumerate(self.top)
            ],
        }


@torch.no_grad()
def predict_tensors(
    model: nn.Module, x: torch.Tensor, classes: Sequence[str], topk: int = 5, batch_size: int = 64
) -> list[list[tuple[int, str, float]]]:
    """Top-``topk`` (index, name, probability) per image of a preprocessed batch ``x`` (N, C, H, W)."""
    device = next(iter(model.parameters())).device
    out: list[list[tuple[int, str, float]]] = []
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size].to(device)).float()
        probs = torch.softmax(logits, dim=1).cpu()
        k = min(topk, probs.shape[1])
        p, idx = probs.topk(k, dim=1)
        for pi, ii in zip(p.tolist(), idx.tolist()):
            out.append(
                [(i, classes[i] if i < len(classes) else f"class {i}", float(q)) for i, q in zip(ii, pi)]
            )
    return out


def predict_files(
    model: nn.Module,
    spec: InputSpec,
    files: Iterable[str | os.PathLike],
    topk: int = 5,
    batch_size: int = 64,
    invert: str = "auto",
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Classify ``files``: ``(predictions for the readable ones, [(file, error message)] for the rest)``.

    ``invert``: match 1-channel images to the training polarity (``auto``, ``never``, ``always``)."""
    if topk < 1:
        raise ConfigError(f"--topk must be >= 1, got {topk}")
    preds: list[Prediction] = []
    errors: list[tuple[str, str]] = []
    if invert not in INVERT_MODES:
        raise ConfigError(f"--invert must be one of {', '.join(INVERT_MODES)}, got {invert!r}")
    names: list[str] = []
    flips: list[bool] = []
    tensors: list[torch.Tensor] = []

    def flush() -> None:  # predict what has been read so far: memory stays bounded by one batch
        if tensors:
            tops = predict_tensors(model, torch.stack(tensors), spec.classes, topk, batch_size)
            preds.extend(Prediction(n, t, inv) for n, t, inv in zip(names, tops, flips))
            names.clear()
            flips.clear()
            tensors.clear()

    for f in files:
        try:
            x, inverted = read_image_polarity(f, spec, invert)
            tensors.append(x)
            flips.append(inverted)
            names.append(str(f))
        except ImageReadError as e:
            errors.append((str(f), str(e)))
        if len(tensors) >= batch_size:
            flush()
    flush()
    return preds, errors


def format_predictions(preds: Sequence[Prediction]) -> str:
    lines: list[str] = []
    for pred in preds:
        lines.append(
            pred.file + ("  (inverted: a dark object on a light background)" if pred.inverted else "")
        )
        width = max(len(c) for _, c, _ in pred.top)
        for rank, (_, name, prob) in enumerate(pred.top, 1):
            lines.append(f"  {rank}. {name:<{width}}  {prob:.4f}")
    return "\n".join(lines)


def run_predict(
    path_or_run: str | os.PathLike,
    files: Sequence[str],
    *,
    topk: int = 5,
    as_json: bool = False,
    device: str = "cpu",
    invert: str = "auto",
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """The ``reslab predict`` command: print predictions, one stderr line per unreadable file.

    Returns 0, or 2 if any file could not be read (the readable ones are still predicted and printed).
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    model, metadata = load(path_or_run)
    model.to(resolve_device(device))
    spec = input_spec(model, metadata)
    if spec.fallbacks:
        print(
            f"reslab: warning: checkpoint metadata has no {', '.join(spec.fallbacks)}; "
            f"using defaults: {spec.describe()}",
            file=stderr,
        )
    preds, errors = predict_files(model, spec, files, topk=topk, invert=invert)
    for _, msg in errors:
        print(f"reslab: error: {msg}", file=stderr)
    if as_json:
        doc = {
            "checkpoint": str(path_or_run),
            "model": getattr(model, "model_name", None),
            "preprocessing": dataclasses.asdict(spec) | {"resize_size": spec.resize_size},
            "predictions": [p.as_dict() for p in preds],
            "errors": [{"file": f, "error": m} for f, m in errors],
        }
        print(json.dumps(doc, indent=2, default=_json_default), file=stdout)
    elif preds:
        print(format_predictions(preds), file=stdout)
    return 2 if errors else 0


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)
