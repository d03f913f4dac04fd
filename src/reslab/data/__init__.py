"""Data: small data sets whole on the device as uint8 (Fashion-MNIST, CIFAR-10/100, synthetic) with
batched on-device augmentation, and ImageNet-style folders through a worker DataLoader.

- :func:`load_dataset` -> :class:`ArrayDataset`; :func:`split_validation`, :func:`subset_dataset`.
- :class:`DeviceLoader` (training batches, exact resume), :func:`iterate_eval` (every sample once).
- :func:`make_imagefolder_loaders` (``root/train``, ``root/val``).
- :func:`load_medmnist`: MedMNIST's 2D and 3D ``.npz`` files (:mod:`reslab.data.medmnist`).
- :func:`read_idx` (IDX files) and :func:`safe_load_pickle` (CIFAR batches, no arbitrary objects).
"""

from reslab.data.cifar import safe_load_pickle
from reslab.data.datasets import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    ArrayDataset,
    channel_stats,
    default_root,
    find_dataset,
    load_dataset,
    search_roots,
    split_validation,
    subset_dataset,
)
from reslab.data.idx import read_idx, write_idx
from reslab.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, ImageFolderLoaders, make_imagefolder_loaders
from reslab.data.loader import DeviceLoader, crop_flip, iterate_eval, norm_constants, normalize
from reslab.data.medmnist import load_medmnist, medmnist_info, unpack_labels

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ArrayDataset",
    "DeviceLoader",
    "ImageFolderLoaders",
    "channel_stats",
    "crop_flip",
    "default_root",
    "find_dataset",
    "iterate_eval",
    "load_dataset",
    "load_medmnist",
    "make_imagefolder_loaders",
    "medmnist_info",
    "norm_constants",
    "normalize",
    "read_idx",
    "safe_load_pickle",
    "search_roots",
    "split_validation",
    "subset_dataset",
    "unpack_labels",
    "write_idx",
]
