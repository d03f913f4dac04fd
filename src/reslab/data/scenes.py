"""Fashion-MNIST scenes: detection and segmentation data made of real images, rebuilt by anyone from a seed.

There is no COCO or VOC on this machine, so the dense tasks get their own data from the real Fashion-MNIST
images (Xiao et al. 2017): a ``size`` x ``size`` grey canvas (default 128) with a textured, noisy
background and 1-6 garments pasted at random positions and scales, possibly overlapping. The labels
come from the garments' own pixels, so they are exact:

- a garment's pixels are those of its (resized) Fashion-MNIST image brighter than ``threshold``; later
  garments occlude earlier ones, and the **instance map** (0 = background, k = the k-th garment) holds
  what stays visible; a placement that would leave an earlier garment less than ``min_visible`` of its
  pixels is retried elsewhere (then dropped), so every labelled garment is clearly there;
- **boxes** are the bounding boxes of the visible pixels, ``(x1, y1, x2, y2)`` with a pixel ``i`` covering
  ``[i, i + 1)`` (torchvision's convention); **labels** are the Fashion-MNIST class + 1 (0 = background,
  as torchvision's detectors and the segmentation class map use);
- the **class map** (per-pixel class, for segmentation) is the instance map looked up in the labels.

Train scenes use only Fashion-MNIST training images and test scenes only test images (``sources``
records which one each garment is). Scene ``i`` of a split is drawn from its own random stream,
``numpy.random.default_rng((seed, split, i))``, and resized with Pillow (integer arithmetic), so the
same arguments give the same bytes. Built scenes are cached as ``.npz`` (no pickles) next to a JSON
record of their SHA-256; a cache whose checksum does not match is rebuilt, with a note.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# SceneLoader lives with the other resumable loaders; reslab.tasks.scenes imports it from here
from reslab.data.loader import SceneLoader as SceneLoader
from reslab.errors import ConfigError, DataError

SPLITS = ("train", "test")
GENERATOR_VERSION = 1  # bump when the drawing changes: old caches are then simply not found


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn (every field enters the cache key)."""

    size: int = 128  # canvas side, pixels
    min_objects: int = 1  # garments drawn per scene, uniformly; one that finds no place (see
    max_objects: int = 6  # min_visible, attempts) is dropped, so a crowded scene may hold fewer
    min_scale: int = 20  # side of a pasted garment (its 28x28 image resized), pixels
    max_scale: int = 56
    threshold: int = 10  # a garment pixel is one brighter than this (0-255) after resizing
    min_visible: float = 0.6  # every garment keeps at least this fraction of its pixels visible
    attempts: int = 20  # placements tried per garment before it is dropped

    def validate(self) -> SceneConfig:
        if not 16 <= self.size <= 1024:
            raise ConfigError(f"scene size must be in [16, 1024], got {self.size}")
        if not 1 <= self.min_objects <= self.max_objects <= 32:
            raise ConfigError(
                f"need 1 <= min_objects <= max_objects <= 32, got {self.min_objects}, {self.max_objects}"
            )
        if not 8 <= self.min_scale <= self.max_scale <= self.size:
            raise ConfigError(
                f"need 8 <= min_scale <= max_scale <= size, got {self.min_scale}, {self.max_scale}"
            )
        if not 0 <= self.threshold < 255 or not 0 < self.min_visible <= 1 or self.attempts < 1:
            raise ConfigError("threshold must be in [0, 255), min_visible in (0, 1], attempts >= 1")
        return self


@dataclasses.dataclass
class Scenes:
    """One split of scenes, whole in memory on the CPU.

    ``images`` uint8 (N, 1, S, S); ``instances`` uint8 (N, S, S) (0 = background, k = the scene's k-th
    garment, visible pixels only); per garment, scene after scene: ``labels`` int64 (M,) (class + 1),
    ``boxes`` float32 (M, 4), ``sources`` int64 (M,) (index of the Fashion-MNIST image of the split),
    ``placements`` int64 (M, 3) (``x0, y0, side``: where the resized image was pasted);
    ``offsets`` int64 (N + 1,): scene ``i`` owns garments ``offsets[i]:offsets[i + 1]``.
    """

    split: str
    images: torch.Tensor
    instances: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    offsets: torch.Tensor
    sources: torch.Tensor
    placements: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def counts(self) -> torch.Tensor:
        """Garments per scene, int64 (N,)."""
        return self.offsets[1:] - self.offsets[:-1]

    def semantic(self, index: torch.Tensor | Sequence[int] | slice) -> torch.Tensor:
        """Per-pixel class maps (0 = background, class + 1), int64 (B, S, S), for scenes ``index``."""
        idx = _as_index(index, len(self))
        inst = self.instances[idx].long()
        out = torch.zeros_like(inst)
        for row, i in enumerate(idx.tolist()):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            table = torch.cat([torch.zeros(1, dtype=torch.long), self.labels[lo:hi]])
            out[row] = table[inst[row]]
        return out

    def target(self, i: int, *, masks: bool = True) -> dict[str, torch.Tensor]:
        """torchvision's detection target of scene ``i``: ``boxes`` float32 (K, 4), ``labels`` int64 (K,)
        and (``masks=True``) ``masks`` uint8 (K, S, S) of the visible pixels."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        out = {"boxes": self.boxes[lo:hi].clone(), "labels": self.labels[lo:hi].clone()}
        if masks:
            ids = torch.arange(1, hi - lo + 1, dtype=torch.uint8)
            out["masks"] = (self.instances[i][None] == ids[:, None, None]).to(torch.uint8)
        return out

    def subset(self, n: int) -> Scenes:
        """The first ``n`` scenes."""
        if not 1 <= n <= len(self):
            raise ConfigError(f"subset must be in [1, {len(self)}], got {n}")
        return self.slice(0, n)

    def slice(self, start: int, stop: int) -> Scenes:
        """Scenes ``start:stop`` (at least one), their garments with them (``offsets`` from 0 again)."""
        if not 0 <= start < stop <= len(self):
            raise ConfigError(f"need 0 <= start < stop <= {len(self)}, got {start}:{stop}")
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return Scenes(
            self.split,
            self.images[start:stop],
            self.instances[start:stop],
            self.labels[lo:hi],
            self.boxes[lo:hi],
            self.offsets[start : stop + 1] - lo,
            self.sources[lo:hi],
            self.placements[lo:hi],
        )


def _as_index(index: torch.Tensor | Sequence[int] | slice, n: int) -> torch.Tensor:
    if isinstance(index, slice):
        return torch.arange(n)[index]
    return torch.as_tensor(index, dtype=torch.long).reshape(-1)


@dataclasses.dataclass
class SceneDataset:
    """Train and test scenes, their classes (``classes[0] == "background"``) and the grey level
    ``mean`` / ``std`` of the training images (0-1 scale), as :class:`~reslab.data.ArrayDataset` has."""

    train: Scenes
    test: Scenes
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    config: SceneConfig
    seed: int
    source: str = ""
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # split -> cache file

    @property
    def num_classes(self) -> int:
        """Classes including the background (11 for Fashion-MNIST)."""
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.train.images.shape[1])

    def __repr__(self) -> str:
        return (
            f"SceneDataset(train={len(self.train)}, test={len(self.test)}, size={self.config.size}, "
            f"classes={self.num_classes}, seed={self.seed})"
        )


# --------------------------------------------------------------------------------------- generation


def resize_garment(img: np.ndarray, side: int) -> np.ndarray:
    """A 28x28 uint8 image resized to ``side`` x ``side`` (Pillow's bilinear filter, antialiased when
    shrinking): the pixels that are pasted into a scene."""
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.BILINEAR))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A grey level, a smooth random texture (bilinearly enlarged 6x6 noise), a grating of random
    orientation and period, and pixel noise, clipped to 0-255."""
    from PIL import Image

    base = rng.uniform(10, 100)
    coarse = rng.normal(0.0, 1.0, (6, 6)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta, period = rng.uniform(0, np.pi), rng.uniform(4, 24)
    grating = np.sin(
        2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi)
    )
    img = (
        base
        + rng.uniform(5, 35) * texture
        + rng.uniform(0, 25) * grating
        + rng.normal(0, rng.uniform(2, 12), (size, size))
    )
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def draw_scene(
    rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, cfg: SceneConfig
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, ...]]]:
    """One scene from ``images`` (uint8 (N, 28, 28)) and their ``labels``: the canvas (S, S), the instance
    map (S, S) and per garment ``(label + 1, source index, x1, y1, x2, y2, x0, y0, side)``: its box
    (visible pixels) and where its resized image was pasted."""
    s = cfg.size
    canvas = _background(rng, s)
    inst = np.zeros((s, s), np.uint8)
    area: list[int] = []
    meta: list[tuple[int, ...]] = []
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        src = int(rng.integers(len(images)))
        side = int(rng.integers(cfg.min_scale, cfg.max_scale + 1))
        garment = resize_garment(images[src], side)
        mask = garment > cfg.threshold
        if mask.sum() < 16:
            continue
        for _attempt in range(cfg.attempts):
            x0, y0 = (int(v) for v in rng.integers(0, s - side + 1, size=2))
            under = inst[y0 : y0 + side, x0 : x0 + side][mask]
            covered = np.bincount(under, minlength=len(area) + 1)[1:]
            visible = np.bincount(inst.ravel(), minlength=len(area) + 1)[1:]
            if all(v - c >= cfg.min_visible * a for v, c, a in zip(visible, covered, area)):
                break
        else:
            continue
        k = len(area) + 1
        canvas[y0 : y0 + side, x0 : x0 + side][mask] = garment[mask]
        inst[y0 : y0 + side, x0 : x0 + side][mask] = k
        area.append(int(mask.sum()))
        meta.append((int(labels[src]) + 1, src, x0, y0, side))
    objects = []
    for k, (label, src, x0, y0, side) in enumerate(meta, start=1):
        ys, xs = np.nonzero(inst == k)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append((label, src, *box, x0, y0, side))
    return canvas, inst, objects


def build_scenes(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    n: int,
    *,
    seed: int,
    split: str,
    config: SceneConfig | None = None,
) -> Scenes:
    """Draw ``n`` scenes from ``images`` (uint8 (N, 28, 28) or (N, 1, 28, 28)) of one split."""
    cfg = (config or SceneConfig()).validate()
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    imgs = np.asarray(images, dtype=np.uint8)
    imgs = imgs[:, 0] if imgs.ndim == 4 else imgs
    labs = np.asarray(labels, dtype=np.int64)
    out_img = np.empty((n, 1, cfg.size, cfg.size), np.uint8)
    out_inst = np.empty((n, cfg.size, cfg.size), np.uint8)
    objects: list[tuple[int, ...]] = []
    offsets = [0]
    for i in range(n):
        rng = np.random.default_rng((int(seed), SPLITS.index(split), i))
        out_img[i, 0], out_inst[i], objs = draw_scene(rng, imgs, labs, cfg)
        objects += objs
        offsets.append(len(objects))
    obj = np.asarray(objects, dtype=np.int64).reshape(-1, 9)
    return Scenes(
        split,
        torch.from_numpy(out_img),
        torch.from_numpy(out_inst),
        torch.from_numpy(obj[:, 0].copy()),
        torch.from_numpy(obj[:, 2:6].astype(np.float32)),
        torch.tensor(offsets, dtype=torch.int64),
        torch.from_numpy(obj[:, 1].copy()),
        torch.from_numpy(obj[:, 6:].copy()),
    )


# ------------------------------------------------------------------------------------------ caching

_ARRAYS = ("images", "instances", "labels", "boxes", "offsets", "sources", "placements")


def _encode(scenes: Scenes) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: getattr(scenes, k).numpy() for k in _ARRAYS})
    return buf.getvalue()


def _decode(data: bytes, split: str) -> Scenes:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return Scenes(split, *(torch.from_numpy(z[k].copy()) for k in _ARRAYS))


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/reslab/scenes`` (default ``~/.cache/reslab/scenes``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "reslab" / "scenes"


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:16]


def _cached(
    path: Path,
    record: dict[str, Any],
    make: Callable[[], Scenes],
    split: str,
    log: Callable[[str], None],
) -> Scenes:
    """Load ``path`` if its JSON record matches ``record`` and its SHA-256; else build, write, record."""
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        try:
            stored = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            stored = {}
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if stored.get("sha256") == digest and stored.get("record") == record:
            try:
                return _decode(data, split)
            except Exception as e:  # a file that hashes right but is not an npz: written by someone else
                log(f"note: {path} is unreadable ({type(e).__name__}); rebuilding the {split} scenes")
        else:
            log(f"note: {path} does not match its checksum record; rebuilding the {split} scenes")
    scenes = make()
    data = _encode(scenes)
    from reslab._io import write_bytes, write_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, data)
        write_json(meta_path, {"sha256": hashlib.sha256(data).hexdigest(), "record": record})
    except OSError as e:
        log(
            f"note: could not cache scenes in {path.parent} ({e.strerror or e}); they will be rebuilt next time"
        )
    return scenes


def _cached_split(
    root: Path,
    split: str,
    x: torch.Tensor,
    y: torch.Tensor,
    n: int,
    seed: int,
    cfg: SceneConfig,
    log: Callable[[str], None],
) -> tuple[Scenes, str]:
    """``n`` scenes of ``split`` drawn from images ``x``, labels ``y``, and their cache file in ``root``,
    named by a digest of everything they are drawn from (:func:`_cached` reads or builds it)."""
    record = {
        "version": GENERATOR_VERSION,
        "split": split,
        "n": n,
        "seed": int(seed),
        "config": dataclasses.asdict(cfg),
        "source": {"images": _digest(x), "labels": _digest(y)},
    }
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    path = root / f"fmnist-scenes-{split}-{key}.npz"
    scenes = _cached(
        path, record, lambda: build_scenes(x, y, n, seed=seed, split=split, config=cfg), split, log
    )
    return scenes, str(path)


def load_scenes(
    train_size: int = 4000,
    test_size: int = 1000,
    *,
    seed: int = 0,
    config: SceneConfig | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    source: Any = None,
    log: Callable[[str], None] | None = None,
) -> SceneDataset:
    """The Fashion-MNIST scenes: ``train_size`` scenes from training images, ``test_size`` from test ones.

    Built on first use (seconds per thousand scenes) and cached in ``cache_dir`` (default
    :func:`default_cache_dir`), keyed by the arguments, the generator version and a digest of the source
    images; the cache's SHA-256 is verified on every load and a mismatch rebuilds it (``log`` gets a
    one-line note; default: stderr). ``source`` is an :class:`~reslab.data.ArrayDataset` to draw from
    (default: ``load_dataset("fashion-mnist", data_dir)``, i.e. Debian's files or ``$RESLAB_DATA``).
    """
    from reslab.data.datasets import channel_stats, load_dataset

    cfg = (config or SceneConfig()).validate()
    if train_size < 1 or test_size < 1:
        raise ConfigError(f"train_size and test_size must be >= 1, got {train_size}, {test_size}")
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    ds = source if source is not None else load_dataset("fashion-mnist", data_dir)
    if tuple(ds.train_x.shape[1:]) != (1, 28, 28) or len(ds.classes) != 10:
        raise DataError(
            f"scenes are drawn from 1x28x28 images of 10 classes, got {tuple(ds.train_x.shape[1:])}"
        )
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    sizes = {"train": train_size, "test": test_size}
    parts: dict[str, Scenes] = {}
    files: dict[str, str] = {}
    for split in SPLITS:
        x, y = (ds.train_x, ds.train_y) if split == "train" else (ds.test_x, ds.test_y)
        parts[split], files[split] = _cached_split(root, split, x, y, sizes[split], seed, cfg, log)
    mean, std = channel_stats(parts["train"].images)
    return SceneDataset(
        parts["train"],
        parts["test"],
        ["background", *ds.classes],
        mean,
        std,
        cfg,
        int(seed),
        source=getattr(ds, "source", ""),
        files=files,
    )
