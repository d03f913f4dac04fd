"""Small image data sets held whole in memory as uint8 tensors: Fashion-MNIST, CIFAR-10/100, synthetic.

:func:`load_dataset` returns an :class:`ArrayDataset`; :func:`split_validation` holds out a validation
set from the training set (the paper's 45k/5k on CIFAR: the test set is never used for model selection);
:func:`subset_dataset` keeps the first or a seeded random ``n`` training images.

Where the files are looked for, in order (the first complete copy wins):

1. ``data_dir`` (the argument), 2. ``$RESLAB_DATA``, 3. ``/usr/share/datasets`` (Debian's
``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist``), 4. :func:`default_root`
(``~/.cache/reslab/data``, where ``download=True`` puts torchvision's layout). In each root the files may
lie directly in it or in the data set's usual sub-folder (``fashion-mnist``, ``FashionMNIST/raw``,
``cifar-10-batches-py``, ``cifar-100-python``, ...). Nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reslab.data.cifar import CIFAR10_DIR, CIFAR100_DIR, cifar_files, read_cifar
from reslab.data.idx import read_idx
from reslab.errors import ConfigError, DataError, first_line

DATASETS = ("fashion-mnist", "cifar10", "cifar100", "synthetic")
ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
}
SYSTEM_ROOT = Path("/usr/share/datasets")

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_SUBDIRS = {
    "fashion-mnist": ("", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    "cifar10": ("", CIFAR10_DIR, f"cifar10/{CIFAR10_DIR}", "cifar10", "cifar-10"),
    "cifar100": ("", CIFAR100_DIR, f"cifar100/{CIFAR100_DIR}", "cifar100", "cifar-100"),
}
_HOW_TO_GET = {
    "fashion-mnist": "apt-get install dataset-fashion-mnist, set RESLAB_DATA, or pass --download",
    "cifar10": "put cifar-10-batches-py (cifar-10-python.tar.gz, extracted) there, or pass --download",
    "cifar100": "put cifar-100-python (cifar-100-python.tar.gz, extracted) there, or pass --download",
}


@dataclasses.dataclass
class ArrayDataset:
    """A whole data set in memory: images uint8 (N, C, H, W) (clips: (N, C, T, H, W)), labels int64 (N,),
    on the CPU.

    ``mean``/``std`` are per-channel statistics of ``train_x`` on the 0-1 scale (population std over
    every pixel of the channel); ``flip`` says whether a horizontal flip is a valid augmentation.
    ``val_x``/``val_y`` are ``None`` unless :func:`split_validation` held a validation set out (or the data
    set comes with one: MedMNIST). ``multi_label``: each label is a row of zeros and ones packed into one
    integer (bit ``j``: label ``j``; :func:`reslab.data.medmnist.unpack_labels`), not a class index.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool = True
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    source: str = ""
    multi_label: bool = False

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(C, H, W) of one image ((C, T, H, W) of one clip)."""
        return tuple(int(s) for s in self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.train_x.shape[1])

    def __repr__(self) -> str:
        val = f", val={len(self.val_y)}" if self.val_y is not None else ""
        return (
            f"ArrayDataset({self.name!r}, train={len(self.train_y)}{val}, test={len(self.test_y)}, "
            f"input_size={self.input_size}, classes={self.num_classes})"
        )


# ------------------------------------------------------------------------------------------ helpers


def default_root() -> Path:
    """Where ``download=True`` puts data: ``$XDG_CACHE_HOME/reslab/data`` (default ``~/.cache/reslab/data``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "reslab" / "data"


def search_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The roots searched, in order: ``data_dir``, ``$RESLAB_DATA``, ``/usr/share/datasets``, default root."""
    roots: list[Path] = []
    if data_dir:
        roots.append(Path(data_dir).expanduser())
    env = os.environ.get("RESLAB_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots += [SYSTEM_ROOT, default_root()]
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def _candidates(name: str, roots: Sequence[Path]) -> list[Path]:
    return [r / sub if sub else r for r in roots for sub in _SUBDIRS[name]]


def _fmnist_file(folder: Path, stem: str) -> Path | None:
    for fname in (stem + ".gz", stem):
        if (folder / fname).is_file():
            return folder / fname
    return None


def _complete(name: str, folder: Path) -> bool:
    if name == "fashion-mnist":
        return all(_fmnist_file(folder, s) is not None for s in FASHION_MNIST_FILES.values())
    return all((folder / f).is_file() for f in cifar_files(name))


def find_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first folder holding a complete copy of ``name``, or ``None``."""
    for folder in _candidates(name, search_roots(data_dir)):
        if _complete(name, folder):
            return folder
    return None


def _missing_message(name: str, data_dir: str | os.PathLike | None) -> str:
    roots = ", ".join(str(r) for r in search_roots(data_dir))
    subs = ", ".join(f"{s}/" for s in _SUBDIRS[name] if s)
    return f"{name} not found: looked in {roots} (directly and in {subs}); to get it: {_HOW_TO_GET[name]}"


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W) or clips (N, C, T, H, W) on the
    0-1 scale, exactly (from each channel's histogram of the 256 values)."""
    if x.ndim not in (4, 5) or x.dtype != torch.uint8:
        shape = f"{tuple(x.shape)} {x.dtype}"
        raise DataError(f"expected uint8 images (N, C, H, W) or clips (N, C, T, H, W), got {shape}")
    x = x.flatten(2, 3) if x.ndim == 5 else x  # (N, C, T*H, W): the same statistics
    c = x.shape[1]
    values = torch.arange(256, dtype=torch.int64)
    hist = torch.stack([torch.bincount(x[:, i].flatten(), minlength=256) for i in range(c)])
    s, ss = hist @ values, hist @ (values * values)
    n = x.shape[0] * x.shape[2] * x.shape[3]
    if n == 0:
        return (0.0,) * c, (1.0,) * c
    mean = s.double() / n
    var = (ss.double() / n - mean * mean).clamp_min(0)
    return tuple((mean / 255).tolist()), tuple((var.sqrt() / 255).tolist())


def _to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, dtype=np.int64))


# -------------------------------------------------------------------------------------- the loaders


def _load_fashion_mnist(folder: Path) -> dict[str, Any]:
    arrays = {}
    for key, stem in FASHION_MNIST_FILES.items():
        path = _fmnist_file(folder, stem)
        assert path is not None
        arrays[key] = read_idx(path, ndim=3 if key.endswith("x") else 1, dtype="uint8")
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.shape[1:] != (28, 28):
            raise DataError(f"{folder}: {split} images have shape {x.shape[1:]}, expected (28, 28)")
        if len(x) != len(y):
            raise DataError(f"{folder}: {len(x)} {split} images but {len(y)} labels")
        if y.size and y.max() >= 10:
            raise DataError(f"{folder}: {split} label {int(y.max())} outside [0, 10)")
    return {
        "train_x": arrays["train_x"][:, None],
        "train_y": arrays["train_y"],
        "test_x": arrays["test_x"][:, None],
        "test_y": arrays["test_y"],
        "classes": list(FASHION_MNIST_CLASSES),
    }


def _download(name: str, data_dir: str | os.PathLike | None) -> None:
    root = Path(data_dir).expanduser() if data_dir else default_root()
    try:
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive

        root.mkdir(parents=True, exist_ok=True)
        if name == "fashion-mnist":  # torchvision's idx reader, no pickle involved
            tvd.FashionMNIST(str(root), train=True, download=True)
            tvd.FashionMNIST(str(root), train=False, download=True)
        else:  # fetch and check the archive only: torchvision's CIFAR class would unpickle it unrestricted
            cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except Exception as e:
        raise DataError(f"could not download {name} to {root} (offline?): {first_line(e, 200)}") from None


def _synthetic(
    shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    train_size: int = 1024,
    test_size: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"synthetic shape must be (C, H, W) with positive sizes, got {shape}")
    if num_classes < 1 or train_size < 0 or test_size < 0:
        raise ConfigError("synthetic data needs num_classes >= 1 and non-negative sizes")
    g = torch.Generator().manual_seed(int(seed))
    n = train_size + test_size
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, num_classes, (n,), generator=g, dtype=torch.int64)
    return {
        "train_x": x[:train_size].clone(),
        "train_y": y[:train_size].clone(),
        "test_x": x[train_size:].clone(),
        "test_y": y[train_size:].clone(),
        "classes": [str(i) for i in range(num_classes)],
    }


def canonical_name(name: str) -> str:
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key == "imagefolder":
        raise ConfigError(
            "imagefolder data is streamed from disk: use reslab.data.make_imagefolder_loaders(root, ...)"
        )
    if key == "medmnist":
        raise ConfigError("MedMNIST is one file per data set: use reslab.data.load_medmnist(flag, size, ...)")
    if key not in DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}; choose from {', '.join((*DATASETS, 'imagefolder', 'medmnist'))}"
        )
    return key


def load_dataset(
    name: str = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    **kwargs: Any,
) -> ArrayDataset:
    """Load ``fashion-mnist``, ``cifar10``, ``cifar100`` or ``synthetic`` whole into uint8 tensors.

    ``synthetic`` takes ``shape=(C, H, W)``, ``num_classes``, ``train_size``, ``test_size`` and ``seed``
    (random images and labels, identical for the same arguments). Missing data is a one-line
    :class:`DataError` that names every place searched and how to get the files.
    """
    key = canonical_name(name)
    if key == "synthetic":
        parts = _synthetic(**kwargs)
        source = "synthetic"
    else:
        if kwargs:
            raise ConfigError(f"{key} takes no options {sorted(kwargs)}")
        folder = find_dataset(key, data_dir)
        if folder is None and download:
            _download(key, data_dir)
            folder = find_dataset(key, data_dir)
        if folder is None:
            raise DataError(_missing_message(key, data_dir))
        parts = _load_fashion_mnist(folder) if key == "fashion-mnist" else read_cifar(folder, key)
        parts["train_x"], parts["train_y"] = _to_tensors(parts["train_x"], parts["train_y"])
        parts["test_x"], parts["test_y"] = _to_tensors(parts["test_x"], parts["test_y"])
        source = str(folder)
    mean, std = channel_stats(parts["train_x"])
    return ArrayDataset(name=key, mean=mean, std=std, flip=True, source=source, **parts)


# ------------------------------------------------------------------------- validation split, subset


def _with_train(ds: ArrayDataset, idx: torch.Tensor, **extra: Any) -> ArrayDataset:
    train_x, train_y = ds.train_x[idx].contiguous(), ds.train_y[idx].contiguous()
    mean, std = channel_stats(train_x)
    return dataclasses.replace(ds, train_x=train_x, train_y=train_y, mean=mean, std=std, **extra)


def split_validation(ds: ArrayDataset, val_size: int | float, seed: int = 0) -> ArrayDataset:
    """Hold ``val_size`` training images out as ``val_x``/``val_y`` (a float in (0, 1) is a fraction).

    The split is a seeded random permutation (same seed, same split); both parts keep the original order.
    ``mean``/``std`` are recomputed on the remaining training images. ``val_size=0`` returns ``ds``.
    """
    if ds.val_x is not None:
        raise ConfigError(f"{ds.name} already has a validation split")
    n = len(ds.train_y)
    if isinstance(val_size, float) and 0 < val_size < 1:
        val_size = round(val_size * n)
    if int(val_size) != val_size or not 0 <= val_size < n:
        raise ConfigError(f"val_size must be an integer in [0, {n}) or a fraction in (0, 1), got {val_size}")
    val_size = int(val_size)
    if val_size == 0:
        return ds
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    val_idx, _ = perm[:val_size].sort()
    train_idx, _ = perm[val_size:].sort()
    return _with_train(
        ds, train_idx, val_x=ds.train_x[val_idx].contiguous(), val_y=ds.train_y[val_idx].contiguous()
    )


def subset_dataset(
    ds: ArrayDataset, n: int, seed: int | None = None, stratified: bool = False
) -> ArrayDataset:
    """Keep ``n`` training images: the first ``n`` (``seed=None``) or a seeded random ``n``.

    ``stratified=True`` keeps each class's share (largest remainders; ``seed=None`` takes each class's
    first images). Validation and test sets are untouched; ``mean``/``std`` are recomputed.
    """
    total = len(ds.train_y)
    if int(n) != n or not 0 < n <= total:
        raise ConfigError(f"subset must be an integer in [1, {total}], got {n}")
    n = int(n)
    if n == total:
        return ds
    g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    if not stratified:
        idx = torch.arange(n) if g is None else torch.randperm(total, generator=g)[:n].sort().values
        return _with_train(ds, idx)
    y = ds.train_y
    classes, counts = torch.unique(y, return_counts=True)
    share = counts.double() * n / total
    take = share.floor().long()
    left = n - int(take.sum())
    if left:
        order = torch.argsort(share - take, descending=True, stable=True)
        take[order[:left]] += 1
    chosen = []
    for c, k in zip(classes.tolist(), take.tolist()):
        members = (y == c).nonzero().flatten()
        if g is not None:
            members = members[torch.randperm(len(members), generator=g)]
        chosen.append(members[:k])
    idx = torch.cat(chosen).sort().values
    return _with_train(ds, idx)
