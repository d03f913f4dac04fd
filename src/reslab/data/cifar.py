"""CIFAR-10 / CIFAR-100 from the original "python version" batches, read without arbitrary unpickling.

The files are pickles (protocol 2, written by Python 2) of dicts with byte-string keys: ``b"data"`` (a
numpy ``uint8`` array of shape (N, 3072): per row 1024 red, then 1024 green, then 1024 blue values, each
plane a row-major 32x32 image), ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` / ``b"coarse_labels"``
(CIFAR-100), ``b"batch_label"`` and ``b"filenames"``.

A pickle can run any code it names, so :class:`SafeUnpickler` resolves only the globals these files need
to rebuild a numpy array and refuses everything else with a one-line :class:`~reslab.errors.DataError`
("refusing to unpickle ..."):

- ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``
  and ``numpy.dtype`` (object dtypes refused: they could smuggle Python objects);
- for pickles written by Python 3 at protocol 2 (as our tests write them; the original files do not
  need these): ``_codecs.encode`` restricted to ``(str, "latin1")``, which is how protocol 2 spells a
  ``bytes`` object, and ``bytes()`` with no argument (the empty byte string).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from reslab.errors import DataError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR10_META = "batches.meta"
CIFAR100_TRAIN, CIFAR100_TEST, CIFAR100_META = "train", "test", "meta"


def _reconstruct_fn():
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _safe_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject:
        raise DataError("refusing to unpickle a numpy array of Python objects")
    return dt


def _latin1_encode(text: Any, encoding: Any = "utf-8", *rest: Any) -> bytes:
    if rest or not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise DataError("refusing to unpickle _codecs.encode with arguments other than (str, 'latin1')")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    if args:
        raise DataError("refusing to unpickle bytes() with arguments")
    return b""


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_fn(),
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_fn(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild plain containers and numeric numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name}: not a plain CIFAR batch") from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError("refusing to unpickle a persistent reference")


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler` (``encoding="bytes"``, as for the original files)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    try:
        return SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:  # a corrupt pickle can fail in many ways; all are data errors
        raise DataError(f"{path}: corrupt or truncated pickle ({type(e).__name__})") from None


def _get(d: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"{path}: missing key {key!r}")


def _decode_names(names: Any, path: Path, key: str) -> list[str]:
    if not isinstance(names, (list, tuple)):
        raise DataError(f"{path}: {key!r} is not a list of names")
    out = []
    for n in names:
        if isinstance(n, bytes):
            n = n.decode("utf-8", errors="replace")
        if not isinstance(n, str):
            raise DataError(f"{path}: {key!r} holds a non-string name")
        out.append(n)
    return out


def read_batch(path: str | os.PathLike, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (images uint8 (N, 3, 32, 32), labels int64 (N,)), shapes and labels checked."""
    path = Path(path)
    d = safe_load_pickle(path)
    if not isinstance(d, dict):
        raise DataError(f"{path}: not a CIFAR batch (a {type(d).__name__}, expected a dict)")
    data = _get(d, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), found {shape}")
    labels = _get(d, label_key, path)
    try:
        y = np.asarray(labels)
    except Exception:
        y = np.asarray([], dtype=object)
    if y.ndim != 1 or y.shape[0] != data.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {label_key!r} must be {data.shape[0]} integers, found {y.shape} {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{path}: labels outside [0, {num_classes}): min {y.min()}, max {y.max()}")
    x = np.ascontiguousarray(data.reshape(-1, 3, 32, 32))  # 1024 R, 1024 G, 1024 B, each row-major 32x32
    return x, y.astype(np.int64)


def read_cifar(directory: str | os.PathLike, variant: str) -> dict[str, Any]:
    """Read a whole ``cifar-10-batches-py`` (variant 10) or ``cifar-100-python`` (variant 100) folder."""
    d = Path(directory)
    if variant == "cifar10":
        train_files, test_file, meta_file = CIFAR10_TRAIN, CIFAR10_TEST, CIFAR10_META
        label_key, names_key, k = "labels", "label_names", 10
    elif variant == "cifar100":
        train_files, test_file, meta_file = (CIFAR100_TRAIN,), CIFAR100_TEST, CIFAR100_META
        label_key, names_key, k = "fine_labels", "fine_label_names", 100
    else:
        raise ValueError(f"unknown CIFAR variant {variant!r}")
    meta = safe_load_pickle(d / meta_file)
    if not isinstance(meta, dict):
        raise DataError(f"{d / meta_file}: not a CIFAR meta file")
    classes = _decode_names(_get(meta, names_key, d / meta_file), d / meta_file, names_key)
    if len(classes) != k:
        raise DataError(f"{d / meta_file}: {len(classes)} class names, expected {k}")
    parts = [read_batch(d / f, label_key, k) for f in train_files]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = read_batch(d / test_file, label_key, k)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "classes": classes}


def cifar_files(variant: str) -> list[str]:
    """The file names a complete CIFAR folder must hold."""
    if variant == "cifar10":
        return [*CIFAR10_TRAIN, CIFAR10_TEST, CIFAR10_META]
    return [CIFAR100_TRAIN, CIFAR100_TEST, CIFAR100_META]
