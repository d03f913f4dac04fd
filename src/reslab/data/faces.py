"""Face photographs by identity: the Olivetti faces (.mat) and a folder of identity sub-folders (LFW's layout).

- **Olivetti** (AT&T "The Database of Faces", 64x64 version prepared by Sam Roweis; the file
  scikit-learn's ``fetch_olivetti_faces`` is made from): ``olivettifaces.mat``, a MATLAB v5 file with one
  variable ``faces``, uint8 (4096, 400); column ``j`` is image ``j`` stored column-major, so
  ``faces[:, j].reshape(64, 64).T`` is upright; image ``j`` shows person ``j // 10`` (40 people, 10
  photographs each). The file's SHA-256 is checked (:data:`OLIVETTI_SHA256`). The owners ask that
  publications acknowledge AT&T Laboratories Cambridge (Samaria and Harter 1994).
- **A folder** ``ROOT/<person>/<image>`` (LFW's layout: ``lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg``): one
  identity per sub-folder, sorted by name; every image is read as grey and resized to ``size`` x ``size``
  (bilinear; colour is dropped, as the Olivetti photographs have none).

:func:`load_faces` reads either; :func:`split_identities` divides the identities (not the images) into
train / validation / test, so that the test identities are never seen in training.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from reslab.errors import ConfigError, DataError
from reslab.manifest import file_sha256

OLIVETTI_FILE = "olivettifaces.mat"
OLIVETTI_SHA256 = "b1988d02c72fe5b8ee82b5ef3bb7982eafc74f1e1ff0ae0ade35061ad0af534d"
FACE_SOURCES = ("olivetti", "faces-folder")


@dataclasses.dataclass(frozen=True)
class FaceData:
    """Grey face images ``images`` uint8 (N, H, W), ``identity`` int64 (N,) indexing ``names``."""

    images: np.ndarray
    identity: np.ndarray
    names: tuple[str, ...]
    source: str  # the file or folder read
    sha256: str | None = None  # the Olivetti file's

    @property
    def num_identities(self) -> int:
        return len(self.names)


def olivetti_path(path: str | os.PathLike | None) -> Path:
    """``olivettifaces.mat`` given as the file or the folder holding it (one line if neither)."""
    if path is None:
        raise ConfigError(f"olivetti needs --data-dir PATH: {OLIVETTI_FILE} or the folder holding it")
    p = Path(path)
    if p.is_dir():
        p = p / OLIVETTI_FILE
    if not p.is_file():
        raise DataError(f"no {OLIVETTI_FILE} at {path}: give the file or the folder holding it")
    return p


def load_olivetti(path: str | os.PathLike | None, *, check: bool = True) -> FaceData:
    """The 400 Olivetti faces (400, 64, 64) upright, person ``j // 10``; the file's SHA-256 checked."""
    import scipy.io

    p = olivetti_path(path)
    digest = file_sha256(p)
    if check and digest != OLIVETTI_SHA256:
        raise DataError(
            f"{p} is not the Olivetti file (SHA-256 {digest[:12]}..., expected {OLIVETTI_SHA256[:12]}...)"
        )
    try:
        faces = scipy.io.loadmat(str(p))["faces"]
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise DataError(
            f"cannot read {p} as the Olivetti .mat file: {str(e).splitlines()[0][:120]}"
        ) from None
    if faces.shape != (4096, 400):
        raise DataError(f"{p}: 'faces' has shape {faces.shape}, expected (4096, 400)")
    images = np.ascontiguousarray(faces.T.reshape(400, 64, 64).transpose(0, 2, 1)).astype(np.uint8)
    identity = np.arange(400, dtype=np.int64) // 10
    names = tuple(f"person{i:02d}" for i in range(40))
    return FaceData(images, identity, names, str(p), digest)


def load_face_folder(root: str | os.PathLike | None, size: int = 64) -> FaceData:
    """``ROOT/<person>/<image>``: every image Pillow reads, grey, resized to ``size`` x ``size``."""
    from PIL import Image, UnidentifiedImageError

    if root is None or not Path(root).is_dir():
        raise ConfigError(f"faces-folder needs --data-dir ROOT with one sub-folder per person, got {root}")
    extensions = set(Image.registered_extensions())
    people = sorted(d for d in Path(root).iterdir() if d.is_dir())
    images, identity, names = [], [], []
    for person in people:
        files = sorted(f for f in person.iterdir() if f.is_file() and f.suffix.lower() in extensions)
        if not files:
            continue
        for f in files:
            try:
                with Image.open(f) as im:
                    grey = im.convert("L").resize((size, size), Image.BILINEAR)
            except (UnidentifiedImageError, OSError, ValueError) as e:
                raise DataError(f"cannot read face image {f}: {str(e).splitlines()[0][:120]}") from None
            images.append(np.asarray(grey, dtype=np.uint8))
            identity.append(len(names))
        names.append(person.name)
    if len(names) < 3:
        raise DataError(
            f"{root} has {len(names)} sub-folders with images; a face split needs at least 3 people"
        )
    return FaceData(np.stack(images), np.asarray(identity, dtype=np.int64), tuple(names), str(root))


def load_faces(source: str, path: str | os.PathLike | None, size: int = 64) -> FaceData:
    """``source`` ``"olivetti"`` (the .mat file) or ``"faces-folder"`` (identity sub-folders)."""
    if source == "olivetti":
        return load_olivetti(path)
    if source == "faces-folder":
        return load_face_folder(path, size)
    raise ConfigError(f"unknown face data set {source!r}; choose from {', '.join(FACE_SOURCES)}")


def split_identities(num_identities: int, val: int, test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded partition of the identities: ``{"train", "val", "test"}`` -> sorted identity indices
    (``test`` identities first in the permutation, then ``val``, the rest train)."""
    if val < 1 or test < 1 or val + test >= num_identities:
        raise ConfigError(
            f"val_identities={val} and test_identities={test} must be >= 1 and leave training identities "
            f"out of {num_identities}"
        )
    order = np.random.default_rng(seed).permutation(num_identities)
    return {
        "test": np.sort(order[:test]),
        "val": np.sort(order[test : test + val]),
        "train": np.sort(order[test + val :]),
    }
