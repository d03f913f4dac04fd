"""``reslab predict``: a trained network of any task on image files, through its task.

The run's task (:func:`reslab.tasks.base.checkpoint_task`) loads the network for prediction
(:meth:`reslab.tasks.base.Task.predictor`): a classifier prints each image's top-``k`` classes with the
run's own preprocessing (:mod:`reslab.tasks.inputs`), a detector or segmenter its detections or its
classes' share of the pixels, a super-resolution network upscales; a task that takes no image files
refuses in one line naming what does. This module is what every task shares: where the files go, what
is printed (text or JSON), and the exit code.

Where a task writes an image per input (a drawing, an upscaled photograph; :func:`output_paths`):
``--out FILE`` for one image; for several images (or an existing directory) ``--out DIR``, one
``DIR/<stem>_<what>.png`` per input. An existing file is refused before anything is predicted, unless
``overwrite`` and it is a PNG reslab wrote (its text chunk, :mod:`reslab.owned`); an input is never
written over. A file that cannot be read is one line on stderr (exit code 2); the others are still
predicted.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reslab.errors import ConfigError
from reslab.owned import png_written_by_reslab
from reslab.tasks import task_class
from reslab.tasks.base import Found, PredictRequest, checkpoint_task


def image_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The files ``reslab predict`` reads: each path as given, a folder replaced by its image files (the
    extensions Pillow reads, not its subfolders), sorted by name. A folder without one: one line."""
    from PIL import Image

    extensions = set(Image.registered_extensions())
    files: list[str] = []
    for path in map(str, paths):
        if not Path(path).is_dir():
            files.append(path)
            continue
        found = sorted(p for p in Path(path).iterdir() if p.is_file() and p.suffix.lower() in extensions)
        if not found:
            raise ConfigError(f"{path} is a folder without image files (PNG, JPEG, ... that Pillow reads)")
        files += [str(p) for p in found]
    return files


def output_paths(
    files: Sequence[str], out: str | os.PathLike | None, what: str, *, overwrite: bool = False
) -> list[Path | None]:
    """The image written for each input (``None``: none): see the module docstring. Refuses (one line) an
    existing target without ``overwrite``, a directory target that is a file, two inputs with one name."""
    if out is None:
        return [None] * len(files)
    out = Path(out)
    if len(files) == 1 and not out.is_dir():
        targets = [out]
    else:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; several images need a directory (one drawing each)")
        targets = [out / f"{Path(f).stem}_{what}.png" for f in files]
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


def run_predict(
    checkpoint: str | os.PathLike,
    files: Sequence[str],
    request: PredictRequest | None = None,
    *,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    as_json: bool = False,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """The ``reslab predict`` command: what the run's task finds in each file (a folder: its image files,
    :func:`image_files`), printed (text, or one JSON document with ``as_json``), and the images it writes
    where ``out`` says (:func:`output_paths`).
    Returns 0, or 2 if any file could not be read (the others are still predicted)."""
    from reslab._io import write_bytes

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    cls = task_class(checkpoint_task(checkpoint))
    if getattr(cls, "plays_episodes", False):  # a run that plays its environment (reinforcement learning)
        print(cls.play(str(checkpoint), list(files), request or PredictRequest(), out=out, overwrite=overwrite),
              file=stdout)  # fmt: skip
        return 0
    if not files:
        raise ConfigError("give one or more image files or folders to predict")
    files = image_files(files)
    predictor = cls.predictor(str(checkpoint), request or PredictRequest())
    if out and predictor.output is None:
        raise ConfigError("--out writes the images a run draws (detection, segmentation) or upscales "
                          "(super-resolution); this run's predictions are printed")  # fmt: skip
    if predictor.output_required and not out:
        raise ConfigError(f"this run writes an image per input: give --out FILE.png (one image) or --out DIR "
                          f"(<stem>_{predictor.output}.png each)")  # fmt: skip
    targets = output_paths(files, out, predictor.output or "", overwrite=overwrite)
    where = dict(zip(files, targets))
    for warning in predictor.warnings:
        print(f"reslab: warning: {warning}", file=stderr)
    found: list[Found] = []
    errors: list[dict[str, str]] = []
    for item in predictor.predict(files):
        if not isinstance(item, Found):
            errors.append({"file": item[0], "error": item[1]})
            print(f"reslab: error: {item[1]}", file=stderr)
            continue
        target = where.get(item.file)
        if predictor.output is not None:
            item.record["drawing"] = str(target) if target is not None and item.png is not None else None
        if target is not None and item.png is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(target, item.png)
            item.lines[0] += f"  -> {target}"
        found.append(item)
        if not as_json:
            print("\n".join(item.lines), file=stdout)
    if as_json:
        doc = predictor.header | {"predictions": [f.record for f in found], "errors": errors}
        print(json.dumps(doc, indent=2, default=_json_default), file=stdout)
    return 2 if errors else 0


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)
