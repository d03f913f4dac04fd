"""``reslab predict`` of a classifier: image files through the run's own preprocessing
(:mod:`reslab.tasks.inputs`), the top-``k`` classes of each (:func:`predict_files`, in batches: memory
stays bounded by one batch), and :class:`ClassifierFiles`, the task's predictor; ``reslab features RUN
IMAGE ...``: :class:`ClassifierEmbedder`, each image's pooled features before the classifier."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.tasks.base import (
    Found,
    PredictRequest,
)
from reslab.tasks.inputs import INVERT_MODES, ImageReadError, InputSpec, read_image_polarity


class ClassifierFiles:
    """A trained classifier loaded for ``reslab predict`` (:class:`reslab.tasks.base.FilePredictor`): each
    image put through the run's own preprocessing (:mod:`reslab.tasks.inputs`), its top-``k`` classes
    printed; nothing is written (``output`` is ``None``)."""

    output = None
    output_required = False

    def __init__(self, checkpoint: str, request: PredictRequest) -> None:
        from reslab._device import resolve_device
        from reslab.tasks.inputs import input_spec, load

        self.model, meta = load(checkpoint)
        self.model.to(resolve_device(request.device))
        self.spec, self.request = input_spec(self.model, meta), request
        # a multi-label run (MedMNIST's ChestMNIST): one sigmoid per label, not a softmax over classes
        self.multi_label = bool((meta["config"].get("data") or {}).get("multi_label"))
        preprocessing = dataclasses.asdict(self.spec) | {"resize_size": self.spec.resize_size}
        self.header = {"checkpoint": checkpoint, "model": getattr(self.model, "model_name", None),
                       "preprocessing": preprocessing}  # fmt: skip
        missing = ", ".join(self.spec.fallbacks)
        self.warnings = [
            f"checkpoint metadata has no {missing}; using defaults: {self.spec.describe()}"
        ] * bool(missing)

    def predict(self, files: Sequence[str]) -> Iterator[Found | tuple[str, str]]:
        preds, errors = predict_files(
            self.model, self.spec, files, topk=self.request.topk, invert=self.request.invert,
            multi_label=self.multi_label,
        )  # fmt: skip
        yield from errors
        yield from (Found(p.file, p.as_dict(), p.lines()) for p in preds)


class ClassifierEmbedder(ClassifierFiles):
    """``reslab features RUN IMAGE ...`` of a classifier: each image's pooled features entering the
    classifier, ``forward_head(forward_features(x), pre_logits=True)`` (timm's name for that vector),
    through the run's own preprocessing; not normalized (the classifier's input as it is)."""

    what = "pooled features before the classifier (pre-logits)"

    @torch.no_grad()
    def embed(
        self, files: Sequence[str], batch_size: int = 64
    ) -> tuple[list[str], Any, list[tuple[str, str]]]:
        from reslab.models.weights import unwrap

        model = unwrap(self.model).eval()
        device = next(iter(model.parameters())).device
        read, pending, out, errors = [], [], [], []
        for i, f in enumerate(files):
            try:
                pending.append(read_image_polarity(f, self.spec, self.request.invert)[0])
                read.append(str(f))
            except ImageReadError as e:
                errors.append((str(f), str(e)))
            if pending and (len(pending) == batch_size or i == len(files) - 1):  # memory: one batch
                x = torch.stack(pending).to(device)
                out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().flatten(1))
                pending.clear()
        return read, torch.cat(out).cpu().numpy() if out else None, errors


@dataclasses.dataclass
class Prediction:
    file: str
    top: list[tuple[int, str, float]]  # (class index, class name, probability), best first
    inverted: bool = False  # the image was inverted to the training polarity (see read_image)
    multi_label: bool = False  # each probability its own label's (sigmoid); present where > 0.5

    def lines(self) -> list[str]:
        """The text ``reslab predict`` prints: the file, then one line per class (rank, name, probability)."""
        width = max(len(c) for _, c, _ in self.top)
        note = "  (inverted: a dark object on a light background)" if self.inverted else ""
        note += "  (multi-label: each label's own probability; > 0.5 = present)" if self.multi_label else ""
        return [self.file + note] + [
            f"  {r}. {c:<{width}}  {p:.4f}" for r, (_, c, p) in enumerate(self.top, 1)
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "inverted": self.inverted,
            "multi_label": self.multi_label,
            "top": [
                {"rank": r + 1, "index": i, "class": c, "prob": p} for r, (i, c, p) in enumerate(self.top)
            ],
        }


@torch.no_grad()
def predict_tensors(
    model: nn.Module,
    x: torch.Tensor,
    classes: Sequence[str],
    topk: int = 5,
    batch_size: int = 64,
    multi_label: bool = False,
) -> list[list[tuple[int, str, float]]]:
    """Top-``topk`` (index, name, probability) per image of a preprocessed batch ``x`` (N, C, H, W) (or
    clips); probabilities by softmax, or one sigmoid per label when ``multi_label``."""
    device = next(iter(model.parameters())).device
    out: list[list[tuple[int, str, float]]] = []
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size].to(device)).float()
        probs = (logits.sigmoid() if multi_label else torch.softmax(logits, dim=1)).cpu()
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
    multi_label: bool = False,
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
            tops = predict_tensors(model, torch.stack(tensors), spec.classes, topk, batch_size, multi_label)
            preds.extend(Prediction(n, t, inv, multi_label) for n, t, inv in zip(names, tops, flips))
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
