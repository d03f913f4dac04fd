"""MedMNIST (Yang et al. 2023, "MedMNIST v2", Scientific Data 10:41): 12 2D and 6 3D biomedical data sets
read from their published ``.npz`` files.

The facts about each data set (its task, label names, channels, split sizes, licence, download URL and
MD5 per size) come from the ``medmnist`` package's ``INFO`` table (``pip install 'reslab[medical]'``),
the source of truth; reslab reads the files itself (no ``medmnist`` Dataset class, no per-image Python).

**The file format** (as ``medmnist/dataset.py`` 3.0.2 reads it): ``{flag}.npz`` for 28 pixels,
``{flag}_{size}.npz`` for the larger sizes of MedMNIST+ (2D: 64, 128, 224; 3D: 64), with the arrays
``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images``, ``test_labels``.
Images are uint8: 2D grey (N, S, S), 2D colour (N, S, S, 3), 3D (N, S, S, S) (depth first: the
package's ``MedMNIST3D`` stacks a channel in front, giving (1, D, H, W)). Labels are integers of shape
(N, 1) (multi-class, binary, ordinal regression) or (N, L) of zeros and ones (multi-label: ChestMNIST's
14 findings).

**As reslab holds them** (:class:`~reslab.data.datasets.ArrayDataset`): images (N, C, H, W), volumes
(N, 1, D, H, W) (depth as a clip's time axis: the video task's 3D networks take them); the official
validation split as ``val_x``/``val_y`` (the benchmark's, so no ``val_split`` is cut); labels int64 (N,),
a multi-label row packed into one integer, bit ``j`` = label ``j`` (:func:`label_bits`,
:func:`unpack_labels`: the on-device loaders take one integer label per sample); ``flip=False``
(a mirrored chest radiograph or organ scan is another anatomy; the benchmark trains without
augmentation).

Where the file is looked for: ``data_dir``, ``$RESLAB_DATA``, ``/usr/share/datasets``, the cache
(``~/.cache/reslab/data``) and the ``medmnist`` package's own root ``~/.medmnist``, each directly and in a
``medmnist/`` sub-folder. ``download=True`` fetches the file from the URL in ``INFO`` into ``data_dir``
(else the cache) and checks its MD5 (torchvision's ``download_url``, as the package does).
"""

from __future__ import annotations

import difflib
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reslab.data.datasets import ArrayDataset, channel_stats, default_root, search_roots
from reslab.errors import ConfigError, DataError, first_line

SPLITS = ("train", "val", "test")
SIZES_2D = (28, 64, 128, 224)
SIZES_3D = (28, 64)
MULTI_LABEL = "multi-label, binary-class"  # INFO's task words
OPTIONS = ("flag", "size")  # the data set's options (``data_kwargs``)


def medmnist_table() -> dict[str, dict[str, Any]]:
    """The ``medmnist`` package's ``INFO``: flag -> task, label names, channels, sizes, licence, URLs.
    (Importing the package creates its default folder ``~/.medmnist`` if missing: its behaviour.)"""
    try:
        from medmnist.info import INFO
    except ImportError:
        raise ConfigError(
            "MedMNIST data needs the medmnist package (its table of data sets): pip install 'reslab[medical]'"
        ) from None
    return INFO


def medmnist_info(flag: str) -> dict[str, Any]:
    """``INFO[flag]`` plus ``flag``, ``is_3d``, ``multi_label`` and ``classes`` (label names in label order);
    an unknown flag is one line naming the closest."""
    table = medmnist_table()
    key = str(flag).strip().lower()
    if key not in table:
        close = difflib.get_close_matches(key, list(table), n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(f"unknown MedMNIST flag {flag!r}; {hint}choose from {', '.join(table)}")
    info = dict(table[key])
    names = info["label"]
    return info | {
        "flag": key,
        "is_3d": key.endswith("3d"),
        "multi_label": info["task"] == MULTI_LABEL,
        "classes": [names[str(i)] for i in range(len(names))],
    }


def file_name(flag: str, size: int = 28) -> str:
    """``pathmnist.npz`` (28) or ``pathmnist_64.npz``: the package's naming."""
    return f"{flag}.npz" if int(size) == 28 else f"{flag}_{int(size)}.npz"


def check_size(info: dict[str, Any], size: Any) -> int:
    sizes = SIZES_3D if info["is_3d"] else SIZES_2D
    if isinstance(size, bool) or not isinstance(size, int) or size not in sizes:
        raise ConfigError(f"{info['flag']} comes in sizes {', '.join(map(str, sizes))}; got size={size!r}")
    return size


def medmnist_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for a MedMNIST file, in order (module docstring)."""
    roots = [*search_roots(data_dir), Path("~/.medmnist").expanduser()]
    return [folder for r in roots for folder in (r, r / "medmnist")]


def find_medmnist(flag: str, size: int = 28, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first ``file_name(flag, size)`` found in :func:`medmnist_roots`, or ``None``."""
    name = file_name(flag, size)
    return next((f / name for f in medmnist_roots(data_dir) if (f / name).is_file()), None)


def download_medmnist(info: dict[str, Any], size: int, data_dir: str | os.PathLike | None = None) -> Path:
    """Fetch ``file_name`` from ``INFO``'s URL into ``data_dir`` (else the cache), MD5-checked."""
    suffix = "" if size == 28 else f"_{size}"
    url, md5 = info[f"url{suffix}"], info[f"MD5{suffix}"]
    root = Path(data_dir).expanduser() if data_dir else default_root()
    name = file_name(info["flag"], size)
    try:
        from torchvision.datasets.utils import download_url

        root.mkdir(parents=True, exist_ok=True)
        download_url(url, str(root), filename=name, md5=md5)
    except Exception as e:
        raise DataError(f"could not download {url} to {root} (offline?): {first_line(e, 200)}") from None
    return root / name


def _missing(info: dict[str, Any], size: int, data_dir: str | os.PathLike | None) -> str:
    suffix = "" if size == 28 else f"_{size}"
    seen = ", ".join(dict.fromkeys(str(r) for r in search_roots(data_dir)))
    return (
        f"{file_name(info['flag'], size)} not found in {seen}, ~/.medmnist (or their medmnist/); pass "
        f"--download, or fetch {info[f'url{suffix}']} (MD5 {info[f'MD5{suffix}']}) into --data-dir"
    )


# --------------------------------------------------------------------------------------------- reading


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The six arrays of a MedMNIST file (no pickled objects); a missing key or a damaged file: one line."""
    keys = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(f"{path} is not a MedMNIST file: no {', '.join(missing)}")
            return {k: z[k] for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"{path} is not a readable .npz file: {first_line(e, 160)}") from None


def _images(x: np.ndarray, info: dict[str, Any], size: int, where: str) -> torch.Tensor:
    """(N, C, H, W) or (N, 1, D, H, W) uint8 from the file's layout, checked against ``info``."""
    c = int(info["n_channels"])
    if info["is_3d"]:
        want = (size,) * 3
    else:
        want = (size, size) if c == 1 else (size, size, c)
    if x.dtype != np.uint8 or tuple(x.shape[1:]) != want:
        raise DataError(
            f"{where}: {x.dtype} {tuple(x.shape)}, expected uint8 (N, {', '.join(map(str, want))})"
        )
    x = x[:, None] if info["is_3d"] or c == 1 else x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x))


def _labels(y: np.ndarray, info: dict[str, Any], n: int, where: str) -> torch.Tensor:
    """int64 (N,): the class, or the multi-label row packed as bits (:func:`label_bits`)."""
    k = len(info["classes"])
    width = k if info["multi_label"] else 1
    y = y.reshape(len(y), -1) if y.ndim > 2 else y  # some copies store (N, 1, 1)
    integral = y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.array_equal(y, np.round(y)))
    if len(y) != n or y.ndim != 2 or y.shape[1] != width or not integral:
        raise DataError(
            f"{where}: {y.dtype} {tuple(y.shape)}, expected {n} integer labels of shape (N, {width})"
        )
    top = 1 if info["multi_label"] else k - 1
    if y.size and (y.min() < 0 or y.max() > top):
        raise DataError(f"{where}: labels in [{y.min()}, {y.max()}], expected 0 to {top}")
    y = torch.from_numpy(y.astype(np.int64))
    return label_bits(y) if info["multi_label"] else y[:, 0].contiguous()


def label_bits(rows: torch.Tensor) -> torch.Tensor:
    """(N, L) zeros and ones -> (N,) int64 with bit ``j`` set where label ``j`` is (L <= 62)."""
    weights = 2 ** torch.arange(rows.shape[1], dtype=torch.int64)
    return (rows.long() * weights).sum(1)


def unpack_labels(y: torch.Tensor, num_labels: int) -> torch.Tensor:
    """The inverse of :func:`label_bits`: (N,) int64 -> (N, L) int64 of zeros and ones (same device)."""
    return (y[:, None] >> torch.arange(num_labels, device=y.device)) & 1


def load_medmnist(
    flag: str = "pathmnist",
    size: int = 28,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> ArrayDataset:
    """MedMNIST data set ``flag`` at ``size`` pixels, whole in memory (module docstring): train, the
    official validation split (``val_x``/``val_y``) and test. ``ds.multi_label`` says how to read ``y``."""
    info = medmnist_info(flag)
    size = check_size(info, size)
    path = find_medmnist(info["flag"], size, data_dir)
    if path is None and download:
        path = download_medmnist(info, size, data_dir)
    if path is None:
        raise DataError(_missing(info, size, data_dir))
    arrays = read_npz(path)
    parts: dict[str, torch.Tensor] = {}
    for split in SPLITS:
        x = _images(arrays[f"{split}_images"], info, size, f"{path}: {split}_images")
        y = _labels(arrays[f"{split}_labels"], info, len(x), f"{path}: {split}_labels")
        parts[f"{split}_x"], parts[f"{split}_y"] = x, y
    mean, std = channel_stats(parts["train_x"])
    return ArrayDataset(
        name="medmnist",
        classes=list(info["classes"]),
        mean=mean,
        std=std,
        flip=False,
        source=str(path),
        multi_label=bool(info["multi_label"]),
        **parts,
    )


def describe_medmnist(flag: str, size: int = 28) -> dict[str, Any]:
    """What a run records of its MedMNIST data: flag, size, the benchmark's task words, licence."""
    info = medmnist_info(flag)
    return {"flag": info["flag"], "size": int(size), "task": info["task"], "license": info["license"]}
