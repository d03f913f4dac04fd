"""``reslab predict`` for detection and segmentation runs: the detections (or the classes' share of the
pixels) of each image printed, and with ``--out`` the image drawn with its boxes or masks.

The model is rebuilt from its checkpoint (:func:`reslab.models.dense.load_dense`: the ``spec`` in the
metadata). An image is read with Pillow, converted to the model's channels (grey ``L`` for the scenes'
1-channel models) and scaled to [0, 1]; nothing else: a detector normalizes and resizes inside
(torchvision's transform, to the scene size it was trained at), a segmenter gets the image resized to its
training size (bilinear) and its class map resized back (nearest). The drawings are
:meth:`reslab.tasks.detection.DetectionTask.draw` / :meth:`~reslab.tasks.segmentation.SegmentationTask.draw`.

Where the drawings go (:func:`output_paths`): ``--out FILE`` for one image; for several images (or an
existing directory) ``--out DIR``, one ``DIR/<stem>_<task>.png`` per input. An existing file is refused
before anything is predicted, unless ``overwrite`` and it is a drawing reslab wrote (its PNG text chunk,
:mod:`reslab.owned`); an input is never written over. A file that cannot be read is one line on stderr
(exit code 2); the others are still predicted.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab._device import resolve_device
from reslab.errors import ConfigError, ReslabError, first_line
from reslab.owned import png_info, png_written_by_reslab


def output_paths(
    files: Sequence[str], out: str | os.PathLike | None, task: str, *, overwrite: bool = False
) -> list[Path | None]:
    """The drawing of each input (``None``: not drawn): see the module docstring. Refuses (one line) an
    existing target without ``overwrite``, a directory target that is a file, two inputs with one name."""
    if out is None:
        return [None] * len(files)
    out = Path(out)
    if len(files) == 1 and not out.is_dir():
        targets = [out]
    else:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; several images need a directory (one drawing each)")
        targets = [out / f"{Path(f).stem}_{task}.png" for f in files]
        if len(set(targets)) != len(targets):
            raise ConfigError(
                f"two images would be drawn to the same file in {out}; give them distinct names"
            )
    inputs = {Path(f).resolve() for f in files}
    for t in targets:
        if t.resolve() in inputs:
            raise ConfigError(f"--out {t} is one of the input images; reslab never writes over an input")
        if t.exists() and not overwrite:
            raise ConfigError(f"{t} exists; pass --overwrite to replace it")
        if t.exists() and not png_written_by_reslab(t):
            raise ConfigError(
                f"{t} exists and is not a drawing reslab wrote; --overwrite replaces only those: "
                "choose another --out"
            )
    return list(targets)


def read_image(path: str | os.PathLike, channels: int) -> torch.Tensor:
    """An image file as uint8 (C, H, W) with the model's ``channels`` (1: grey, 3: RGB)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
            w, h = im.size
    except (OSError, ValueError) as e:
        raise ReslabError(f"{path}: cannot read the image ({first_line(e, 120)})") from None
    return data.view(h, w, channels).permute(2, 0, 1).contiguous()


def predict_image(
    model: nn.Module, image: torch.Tensor, classes: Sequence[str], *, score_threshold: float = 0.5
) -> tuple[dict[str, Any], torch.Tensor]:
    """``(what was found, drawing)`` for one uint8 image (C, H, W): detection: ``{"detections": [{"class",
    "label", "score", "box"}]}`` (scores at least ``score_threshold``); segmentation: ``{"pixels": {class:
    share of the image}}`` (background included). The drawing is RGB uint8 (3, H, W)."""
    from reslab.tasks import scene_ops
    from reslab.tasks.scenes import spec_of

    spec = spec_of(model)
    task = scene_ops(spec["task"])
    device = next(model.parameters()).device
    x = image.to(device).float().div(255)[None]
    if spec["task"] == "detection":
        pred = {k: v.cpu() for k, v in task.predict(model, x)[0].items()}  # type: ignore[union-attr]
        keep = pred["scores"] >= score_threshold
        found = [
            {"class": _name(classes, int(c)), "label": int(c), "score": round(float(s), 4),
             "box": [round(float(v), 1) for v in b]}
            for c, s, b in zip(pred["labels"][keep], pred["scores"][keep], pred["boxes"][keep])
        ]  # fmt: skip
        drawing = task.draw(image, pred, classes, score_threshold=score_threshold)  # type: ignore[call-arg]
        return {"detections": found}, drawing
    size = spec.get("image_size")
    h, w = image.shape[-2:]
    xin = (
        F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if size and (h, w) != (size, size)
        else x
    )
    class_map = task.predict(model, xin)  # type: ignore[union-attr]
    if class_map.shape[-2:] != (h, w):
        class_map = F.interpolate(class_map[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    class_map = class_map[0].cpu()
    counts = torch.bincount(class_map.reshape(-1), minlength=int(spec["num_classes"]))
    share = {
        _name(classes, c): round(float(n) / class_map.numel(), 4) for c, n in enumerate(counts.tolist()) if n
    }
    drawing = task.draw(image, class_map, int(spec["num_classes"]))  # type: ignore[call-arg]
    return {"pixels": share}, drawing


def _name(classes: Sequence[str], label: int) -> str:
    return classes[label] if 0 <= label < len(classes) else str(label)


def _png(drawing: torch.Tensor) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(drawing.permute(1, 2, 0).contiguous().numpy()).save(buf, format="PNG", pnginfo=png_info())
    return buf.getvalue()


def run_predict_dense(
    path_or_run: str | os.PathLike,
    files: Sequence[str],
    *,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    score_threshold: float = 0.5,
    as_json: bool = False,
    device: str = "cpu",
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """The ``reslab predict`` command for a detection / segmentation run: print what each image holds,
    draw it where :func:`output_paths` says. Returns 0, or 2 if any image could not be read."""
    from reslab._io import write_bytes
    from reslab.models.dense import load_dense

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if not 0.0 <= score_threshold <= 1.0:
        raise ConfigError(f"--score-threshold must be in [0, 1], got {score_threshold}")
    model, meta = load_dense(path_or_run)
    task = model.spec["task"]
    targets = output_paths(files, out, task, overwrite=overwrite)
    model = model.to(resolve_device(device)).float().eval()
    classes = meta.get("classes") or [str(i) for i in range(int(model.spec["num_classes"]))]
    channels = int(model.spec.get("backbone_kwargs", {}).get("in_chans", 3))
    results, errors = [], []
    for file, target in zip(files, targets):
        try:
            image = read_image(file, channels)
        except ReslabError as e:
            errors.append({"file": file, "error": str(e)})
            print(f"reslab: error: {e}", file=stderr)
            continue
        found, drawing = predict_image(model, image, classes, score_threshold=score_threshold)
        if target is not None:
            if target.parent != Path(""):
                target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(target, _png(drawing))
        results.append({"file": file, **found, "drawing": str(target) if target else None})
    if as_json:
        doc = {"checkpoint": str(path_or_run), "task": task, "predictions": results, "errors": errors}
        print(json.dumps(doc, indent=2), file=stdout)
    else:
        print(format_dense(results, score_threshold), file=stdout)
    return 2 if errors else 0


def format_dense(results: Sequence[dict[str, Any]], score_threshold: float) -> str:
    """The text ``reslab predict`` prints: per image its detections (class, score, box) or the classes'
    share of its pixels, and where its drawing went."""
    lines: list[str] = []
    for r in results:
        drawn = f"  -> {r['drawing']}" if r.get("drawing") else ""
        if "detections" in r:
            lines.append(
                f"{r['file']}: {len(r['detections'])} detections (score >= {score_threshold:g}){drawn}"
            )
            for d in r["detections"]:
                box = ", ".join(f"{v:g}" for v in d["box"])
                lines.append(f"  {d['class']:<12s} {d['score']:.3f}  [{box}]")
        else:
            lines.append(f"{r['file']}: classes by share of the pixels{drawn}")
            for name, share in sorted(r["pixels"].items(), key=lambda kv: -kv[1]):
                lines.append(f"  {name:<12s} {100 * share:5.1f}%")
    return "\n".join(lines)
