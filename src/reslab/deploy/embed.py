"""``reslab features RUN IMAGE ...``: each image's vector from a trained network, through its task.

The run's task loads the network (:meth:`reslab.tasks.base.Task.embedder`): a face run gives its
L2-normalized embedding (what verification compares by cosine; the ``embeddings`` of facenet-pytorch's
``InceptionResnetV1`` and of insightface's backbones), a classifier its pooled features before the
classifier (timm's ``forward_head(..., pre_logits=True)``); other tasks refuse in one line. Printed as text
(the file, the size, the norm and the first values) or JSON (every value); ``--out FILE.npz`` writes
``files`` (N,) and ``embeddings`` (N, D) float32 with NumPy (``numpy.load``), written whole (a temporary
file renamed into place). An existing ``--out`` is refused unless ``overwrite`` and it is a file this
command wrote (its ``reslab_features`` entry); a file that cannot be read is one line on stderr (exit 2),
the others are still embedded.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reslab.errors import ConfigError
from reslab.tasks import task_class
from reslab.tasks.base import PredictRequest, checkpoint_task

# the entry that says an .npz is this command's (``--overwrite`` replaces only those)
MARK = "reslab_features"


def _written_here(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as doc:
            return MARK in doc.files
    except (OSError, ValueError, EOFError):
        return False


def check_out(out: str | os.PathLike, files: Sequence[str], *, overwrite: bool) -> Path:
    """The ``--out`` file, checked before anything is computed (one line otherwise)."""
    path = Path(out)
    if path.suffix != ".npz":
        raise ConfigError(
            f"--out {out}: embeddings are written as NumPy .npz (files, embeddings); name it *.npz"
        )
    if path.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name ending in .npz")
    if path.resolve() in {Path(f).resolve() for f in files}:
        raise ConfigError(f"--out {out} is one of the input images; reslab never writes over an input")
    if path.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    if path.exists() and not _written_here(path):
        raise ConfigError(f"{out} exists and is not an embeddings file reslab wrote; choose another --out")
    return path


def save_npz(path: Path, files: list[str], vectors: np.ndarray, meta: dict[str, Any]) -> None:
    """``files`` and ``vectors`` to ``path``, whole or not at all."""
    from reslab._io import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        np.savez(f, files=np.array(files, dtype=str), embeddings=vectors.astype(np.float32),
                 **{MARK: np.array(json.dumps(meta))})  # fmt: skip


def run_embed(
    checkpoint: str | os.PathLike,
    paths: Sequence[str],
    request: PredictRequest | None = None,
    *,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    as_json: bool = False,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """The ``reslab features RUN IMAGE ...`` command; returns 0, or 2 if a file could not be read."""
    from reslab.deploy.predict import image_files

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if not Path(checkpoint).exists():
        raise ConfigError(f"embedding images needs a trained network (a run or a checkpoint); {checkpoint} "
                          "is not one: a model name gives random weights")  # fmt: skip
    files = image_files(paths)
    target = check_out(out, files, overwrite=overwrite) if out else None
    embedder = task_class(checkpoint_task(checkpoint)).embedder(str(checkpoint), request or PredictRequest())
    read, vectors, errors = embedder.embed(files)
    for _, message in errors:
        print(f"reslab: error: {message}", file=stderr)
    header = embedder.header | {"what": embedder.what}
    if vectors is not None and target is not None:
        save_npz(target, read, vectors, header)
    if as_json:
        rows = [] if vectors is None else vectors.tolist()
        doc = header | {"out": str(target) if target and vectors is not None else None,
                        "embeddings": [{"file": f, "vector": [round(v, 6) for v in row]} for f, row in zip(read, rows)],
                        "errors": [{"file": f, "error": m} for f, m in errors]}  # fmt: skip
        print(json.dumps(doc, indent=2), file=stdout)
    elif vectors is not None:
        print(f"{embedder.what}, {vectors.shape[1]} values per image", file=stdout)
        for f, v in zip(read, vectors):
            head = ", ".join(f"{x:+.4f}" for x in v[:4])
            print(f"  {f}: norm {np.linalg.norm(v):.4f}  [{head}, ...]", file=stdout)
        if target is not None:
            print(f"-> {target} (numpy.load: files, embeddings)", file=stdout)
    return 2 if errors else 0
