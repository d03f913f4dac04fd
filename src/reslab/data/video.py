"""Moving Fashion-MNIST: short clips of a real garment moving across a black canvas, for 3D ResNets.

Each clip is ``frames`` frames of ``size`` x ``size`` (default 16 x 64 x 64, one channel, uint8): one
Fashion-MNIST image (28 x 28) moving in a straight line at a constant ``speed`` pixels per frame (drawn from
``speeds``) in one of four directions. The label is ``garment * 4 + direction`` (:func:`clip_factors`
splits it), 40 classes named ``"Sneaker, left"`` and so on.

Why the direction needs time: the start is drawn so that every path lies inside the canvas and the paths
of opposite directions are mirror images of each other (a path to the right, played backwards, is a path
to the left with the same probability). So the *set* of frames of a clip says nothing about the sign of its
motion: any model that pools per-frame features without their order (a 2D network averaged over time) is
at best at 50% on direction, 0.5 x its garment accuracy on the label; order-aware models (3D, (2+1)D
convolutions) can reach 100%. The axis (horizontal or vertical) is visible in a single clip's spread of
positions; the garment in any single frame.

Train clips use only Fashion-MNIST's training images, test clips only its test images; every clip is a pure
function of ``(seed, split)``. :func:`load_moving_fashion` caches the clips in one ``.npz`` file per
specification and source (``~/.cache/reslab/data/moving-fashion`` by default) beside a JSON record of the
specification and the file's SHA-256; a cache whose checksum does not match is rebuilt, and the data set's
``source`` names the file and its digest (runs record it).

Batches: :class:`ClipLoader` is a :class:`~reslab.data.loader.DeviceLoader` on the clips with their frames
stacked as channels ((N, C*T, H, W): one gather per batch, exact resume, the same random crop for every
frame of a clip), handing out (B, C, T, H, W); :func:`iterate_clips` is :func:`iterate_eval` for clips.
Horizontal flips are off (``flip=False``): a flip swaps "left" and "right".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reslab._io import atomic_write, write_json
from reslab.data.datasets import ArrayDataset, channel_stats, default_root, load_dataset
from reslab.data.loader import DeviceLoader, epoch_seed, iterate_eval
from reslab.errors import ConfigError
from reslab.manifest import file_sha256

DIRECTIONS = ("right", "left", "down", "up")
_STEP = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx) per frame of each direction, in units of speed
GARMENT = 28  # Fashion-MNIST's image size


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """What the clips are: frames, canvas size, speeds (pixels per frame), clip counts and the seed."""

    frames: int = 16
    size: int = 64
    speeds: tuple[int, ...] = (1, 2)
    train_clips: int = 10_000
    test_clips: int = 2_000
    seed: int = 0

    def __post_init__(self) -> None:
        room = self.size - GARMENT
        if self.frames < 2 or room < 0 or not self.speeds or min(self.speeds) < 1:
            raise ConfigError(
                f"clips need frames >= 2, size >= {GARMENT} and speeds >= 1, got {self.frames}, "
                f"{self.size}, {self.speeds}"
            )
        if max(self.speeds) * (self.frames - 1) > room:
            raise ConfigError(
                f"a garment at speed {max(self.speeds)} leaves a {self.size}-pixel canvas in "
                f"{self.frames} frames; the fastest speed is {room // (self.frames - 1)}"
            )
        if self.train_clips < 1 or self.test_clips < 1:
            raise ConfigError(f"clip counts must be positive, got {self.train_clips}, {self.test_clips}")


def clip_classes(garments: Sequence[str]) -> list[str]:
    """The 4 x len(garments) class names, ``label = garment * 4 + direction``."""
    return [f"{g}, {d}" for g in garments for d in DIRECTIONS]


def clip_factors(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(garment, direction) of clip labels."""
    return labels // len(DIRECTIONS), labels % len(DIRECTIONS)


# ------------------------------------------------------------------------------------------ rendering


def draw_paths(n: int, spec: ClipSpec, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Random straight paths: ``direction`` (n,), ``speed`` (n,) and ``y``/``x`` (n, T), the garment's top
    left corner in every frame. The coordinate along the motion is placed uniformly among the starts that
    keep the whole path inside the canvas, so opposite directions have mirror-image path distributions."""
    room, t = spec.size - GARMENT, spec.frames
    direction = torch.randint(0, len(DIRECTIONS), (n,), generator=g)
    speed = torch.as_tensor(spec.speeds)[torch.randint(0, len(spec.speeds), (n,), generator=g)]
    travel = speed * (t - 1)
    lo = torch.floor(torch.rand(n, generator=g) * (room - travel + 1)).long()  # the path's lower end
    across = torch.randint(0, room + 1, (n,), generator=g)
    step = torch.as_tensor(_STEP)[direction]  # (n, 2)
    frames = torch.arange(t)
    along = lo[:, None] + torch.where(
        (step.sum(1) > 0)[:, None], speed[:, None] * frames, travel[:, None] - speed[:, None] * frames
    )
    vertical = (step[:, 0] != 0)[:, None]
    y = torch.where(vertical, along, across[:, None].expand(n, t))
    x = torch.where(vertical, across[:, None].expand(n, t), along)
    return {"direction": direction, "speed": speed, "y": y, "x": x}


def render(
    images: torch.Tensor, y: torch.Tensor, x: torch.Tensor, size: int, chunk: int = 1024
) -> torch.Tensor:
    """uint8 clips (n, 1, T, size, size): image ``i`` (28 x 28) pasted at ``(y[i, t], x[i, t])`` in frame t."""
    n, t = y.shape
    out = torch.zeros(n * t * size * size, dtype=torch.uint8)
    r = torch.arange(GARMENT)
    for s in range(0, n, chunk):  # flat indices of n * T * 28 * 28 pixels would not fit at once
        e = min(s + chunk, n)
        frame = torch.arange(s * t, e * t).view(e - s, t, 1, 1) * (size * size)
        flat = frame + (y[s:e, :, None, None] + r[:, None]) * size + (x[s:e, :, None, None] + r)
        out[flat.view(-1)] = images[s:e, None].expand(-1, t, -1, -1).reshape(-1)
    return out.view(n, 1, t, size, size)


def make_clips(
    images: torch.Tensor, labels: torch.Tensor, n: int, spec: ClipSpec, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clips (n, 1, T, H, W) and labels from uint8 ``images`` (N, 1, 28, 28): each image at most once
    per pass through a seeded permutation, a random path per clip (:func:`draw_paths`)."""
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, GARMENT, GARMENT) or images.dtype != torch.uint8:
        raise ConfigError(f"moving clips need uint8 images (N, 1, 28, 28), got {tuple(images.shape)}")
    g = torch.Generator().manual_seed(seed)
    passes = -(-n // len(images))
    pick = torch.cat([torch.randperm(len(images), generator=g) for _ in range(passes)])[:n]
    path = draw_paths(n, spec, g)
    clips = render(images[pick, 0], path["y"], path["x"], spec.size)
    return clips, labels[pick].long() * len(DIRECTIONS) + path["direction"]


def moving_clips(ds: ArrayDataset, spec: ClipSpec = ClipSpec()) -> ArrayDataset:
    """The clip data set of ``spec`` from a 1 x 28 x 28 image data set (train clips from ``ds.train_x``,
    test clips from ``ds.test_x``): uint8 (N, 1, T, H, W), ``flip=False``."""
    train_x, train_y = make_clips(ds.train_x, ds.train_y, spec.train_clips, spec, epoch_seed(spec.seed, 0))
    test_x, test_y = make_clips(ds.test_x, ds.test_y, spec.test_clips, spec, epoch_seed(spec.seed, 1))
    mean, std = channel_stats(train_x)
    return ArrayDataset(
        name=f"moving-{ds.name}",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        classes=clip_classes(ds.classes),
        mean=mean,
        std=std,
        flip=False,
        source=f"clips of {ds.source or ds.name}",
    )


# ---------------------------------------------------------------------------------------------- cache


def _digest(*arrays: torch.Tensor) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((tuple(a.shape), str(a.dtype))).encode())
        h.update(a.contiguous().numpy().tobytes())
    return h.hexdigest()


def load_moving_fashion(
    spec: ClipSpec = ClipSpec(),
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> ArrayDataset:
    """The Moving Fashion-MNIST clips of ``spec`` (module docstring), from the cache or built and cached.

    Fashion-MNIST is found as :func:`~reslab.data.load_dataset` finds it (``data_dir``, ``download``). The
    cache file is keyed by ``spec`` and the SHA-256 of the Fashion-MNIST arrays; its own SHA-256 is
    checked on every load (a mismatch, e.g. a truncated file, rebuilds it).
    """
    fmnist = load_dataset("fashion-mnist", data_dir, download)
    source = _digest(fmnist.train_x, fmnist.train_y, fmnist.test_x, fmnist.test_y)
    record = {"spec": dataclasses.asdict(spec), "fashion_mnist_sha256": source}
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() if cache_dir else default_root() / "moving-fashion"
    path, meta_path = folder / f"moving-fashion-{key}.npz", folder / f"moving-fashion-{key}.json"
    parts = _read_cache(path, meta_path)
    if parts is None:
        ds = moving_clips(fmnist, spec)
        with atomic_write(path) as f:
            np.savez_compressed(
                f, **{k: getattr(ds, k).numpy() for k in ("train_x", "train_y", "test_x", "test_y")}
            )
        write_json(meta_path, record | {"sha256": file_sha256(path)})
        parts = {k: getattr(ds, k) for k in ("train_x", "train_y", "test_x", "test_y")}
    mean, std = channel_stats(parts["train_x"])
    digest = json.loads(meta_path.read_text())["sha256"]
    return ArrayDataset(
        name="moving-fashion-mnist",
        classes=clip_classes(fmnist.classes),
        mean=mean,
        std=std,
        flip=False,
        source=f"{path} (sha256 {digest})",
        **parts,
    )


def _read_cache(path: Path, meta_path: Path) -> dict[str, torch.Tensor] | None:
    """The cached arrays, or ``None`` if missing, unreadable or not matching their recorded checksum."""
    try:
        recorded = json.loads(meta_path.read_text())["sha256"]
        if file_sha256(path) != recorded:
            return None
        with np.load(path, allow_pickle=False) as z:
            return {k: torch.from_numpy(z[k]) for k in ("train_x", "train_y", "test_x", "test_y")}
    except (OSError, ValueError, KeyError):
        return None


# -------------------------------------------------------------------------------------------- batches


def _per_frame(stats: Sequence[float], channels: int, frames: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in np.ravel(stats))
    values = values * channels if len(values) == 1 else values
    return tuple(v for v in values for _ in range(frames))  # channel-major, as (C, T) flattens


class ClipLoader:
    """A :class:`DeviceLoader` over clips (N, C, T, H, W) yielding (B, C, T, H, W) batches.

    The frames are stacked as channels for the loader (one flat gather per batch; a random crop, if
    ``augment``, is the same for every frame of a clip); ``flip`` is off unless asked for (it swaps left and
    right). Every other argument, ``state_dict``/``load_state_dict`` (exact resume), ``len`` and
    ``batches()`` are the loader's.
    """

    def __init__(self, x: Any, y: Any, batch_size: int, *, mean=(0.0,), std=(1.0,), flip=False, **kw: Any):
        x = torch.as_tensor(x)
        if x.ndim != 5:
            raise ConfigError(f"ClipLoader needs uint8 clips (N, C, T, H, W), got {tuple(x.shape)}")
        self.clip_shape = tuple(int(v) for v in x.shape[1:])
        c, t = self.clip_shape[:2]
        self.channels_last = bool(kw.pop("channels_last", False))
        self.loader = DeviceLoader(
            x.flatten(1, 2),
            y,
            batch_size,
            mean=_per_frame(mean, c, t),
            std=_per_frame(std, c, t),
            flip=flip,
            **kw,
        )

    def _clips(self, xb: torch.Tensor) -> torch.Tensor:
        xb = xb.unflatten(1, self.clip_shape[:2])
        return xb.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else xb

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for xb, yb in self.loader:
            yield self._clips(xb), yb

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches forever, epoch after epoch."""
        while True:
            yield from self

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # epoch, position, state_dict, load_state_dict, set_epoch, ...
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)


def iterate_clips(
    x: Any, y: Any, batch_size: int, device: Any = "cpu", mean=(0.0,), std=(1.0,), **kw: Any
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every clip once, in order, normalized: :func:`iterate_eval` for (N, C, T, H, W)."""
    x = torch.as_tensor(x)
    if x.ndim != 5:
        raise ConfigError(f"iterate_clips needs uint8 clips (N, C, T, H, W), got {tuple(x.shape)}")
    c, t = x.shape[1:3]
    stats = {"mean": _per_frame(mean, c, t), "std": _per_frame(std, c, t)}
    for xb, yb in iterate_eval(x.flatten(1, 2), y, batch_size, device, **stats, **kw):
        yield xb.unflatten(1, (c, t)), yb
