"""ImageNet-style folders (``root/train/<class>/*.jpg``, ``root/val/<class>/*.jpg``) through a DataLoader.

Training augmentation is the standard ImageNet recipe as torchvision implements it (He et al. 2016 used
scale augmentation + 224 crops + flips + colour augmentation; the now-standard RandomResizedCrop recipe
replaces the first and omits the last): ``RandomResizedCrop(image_size)``, ``RandomHorizontalFlip``,
``Normalize(IMAGENET_MEAN, IMAGENET_STD)``. Evaluation: resize the short side to ``image_size * 256/224``
(256 for 224), center crop ``image_size``, normalize. Decoding runs in ``workers`` worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Sampler

from reslab.errors import DataError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFolderLoaders(NamedTuple):
    train: DataLoader
    val: DataLoader
    classes: list[str]
    train_sampler: Sampler | None  # a DistributedSampler (call ``set_epoch``) when distributed


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``world`` takes indices ``r, r + world, ...``: every sample exactly once over all ranks
    (no padding, so an evaluation sums exact counts; ranks may differ by one sample)."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))


def imagefolder_transforms(image_size: int = 224, resize_size: int | None = None):
    """(train, eval) torchvision transforms of the ImageNet recipe."""
    from torchvision import transforms as T

    resize_size = resize_size or round(image_size * 256 / 224)
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = T.Compose(
        [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.PILToTensor(), _ToFloat(), norm]
    )
    evaluate = T.Compose([T.Resize(resize_size), T.CenterCrop(image_size), T.PILToTensor(), _ToFloat(), norm])
    return train, evaluate


class _ToFloat:
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32).div_(255)


def _folder(root: Path, split: str, transform: Any):
    from torchvision.datasets import ImageFolder

    d = root / split
    if not d.is_dir():
        raise DataError(
            f"imagefolder: no {split}/ folder in {root} (expected {root}/{split}/<class>/<image>)"
        )
    try:
        return ImageFolder(str(d), transform=transform)
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"imagefolder {d}: {first_line(e)}") from None


def usable_workers(workers: int) -> int:
    """``workers`` decoding processes, at most one per CPU this process may run on (more only queue for
    the same cores, and torch warns about each loader that asks for them)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(int(workers), cpus))


def make_imagefolder_loaders(
    root: str | os.PathLike,
    batch_size: int,
    workers: int = 8,
    image_size: int = 224,
    *,
    distributed: bool = False,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    resize_size: int | None = None,
    pin_memory: bool | None = None,
    val_batch_size: int | None = None,
) -> ImageFolderLoaders:
    """Training and validation loaders over ``root/train`` and ``root/val``.

    ``batch_size`` is per process; ``workers`` is capped by the CPUs (:func:`usable_workers`). ``distributed=True`` shards training with a ``DistributedSampler``
    (seeded, shuffled, drop_last; call ``train_sampler.set_epoch(epoch)``) and validation with
    :class:`ShardSampler` (each image exactly once). The class lists of ``train/`` and ``val/`` must match.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder: {root} is not a folder (expected {root}/train/<class>/ and val/)")
    t_train, t_eval = imagefolder_transforms(image_size, resize_size)
    train_ds = _folder(root, "train", t_train)
    val_ds = _folder(root, "val", t_eval)
    if train_ds.classes != val_ds.classes:
        raise DataError(
            f"imagefolder {root}: train/ has {len(train_ds.classes)} classes, val/ {len(val_ds.classes)}; "
            "they must be the same folders"
        )
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    workers = usable_workers(workers)
    common: dict[str, Any] = {"num_workers": workers, "pin_memory": pin}
    if workers > 0:
        common |= {"persistent_workers": True, "prefetch_factor": 4}
    g = torch.Generator().manual_seed(int(seed))
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        train_sampler = DistributedSampler(
            train_ds, num_replicas=world_size, rank=rank, shuffle=True, seed=int(seed), drop_last=True
        )
        val_sampler: Sampler | None = ShardSampler(len(val_ds), rank, world_size)
        train = DataLoader(train_ds, batch_size, sampler=train_sampler, drop_last=True, **common)
    else:
        train_sampler, val_sampler = None, None
        train = DataLoader(train_ds, batch_size, shuffle=True, drop_last=True, generator=g, **common)
    val = DataLoader(val_ds, val_batch_size or batch_size, shuffle=False, sampler=val_sampler, **common)
    return ImageFolderLoaders(train, val, list(train_ds.classes), train_sampler)
