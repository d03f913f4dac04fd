"""Super-resolution data: real photographs, bicubic low-resolution inputs, random training patches.

The default images are the colour photographs of real scenes that scikit-image ships inside its wheel
(``skimage.data``; no download, identical bytes on every machine with the same scikit-image):

- training: ``astronaut`` (512 x 512: face, fabric, flag), ``rocket`` (427 x 640: sky, metal, trees) and
  ``motorcycle`` (the left view of ``stereo_motorcycle``, 500 x 741: fine mechanical detail);
- held out for testing: ``chelsea`` (300 x 451: a cat's fur, the hardest texture of the set) and
  ``coffee`` (400 x 600: smooth curved surfaces and wood grain).

Why these: they are the only RGB photographs of natural scenes in the set (the rest is grey, synthetic,
microscopy, astronomy or text); the two stereo views are one scene, so only the left one is used;
``cat`` is ``chelsea`` again, so it is not a second image. The test images are never cropped into
training patches. Fashion-MNIST (28 x 28 garments) is too small to be downsampled 4x meaningfully.

Validation (``val_rows``, off by default here; the training task holds out 96 rows): model selection must
not look at the test photographs, and there is no sixth independent photograph to spare, so the bottom
``val_rows`` rows of each *training* photograph are cut off as a validation image (``astronaut-bottom``
etc.: the suit and hand, the trees and ground below the rocket, the motorcycle's wheels and floor, the most
detailed parts of each). Holding out a whole photograph instead would cost a third of the training data and
the only face or the only machine; a band of each keeps every scene in training. The cut is made in high
resolution *before* downsampling, and each part is downsampled on its own, so no training pixel (LR or HR)
depends on a validation pixel. The band shares its scene with the training part, so validation PSNR is
somewhat optimistic about unseen photographs: it ranks checkpoints; the test photographs give the number.

Low-resolution images are made as the SR papers make them (MATLAB's ``imresize``): the high-resolution
image is cropped to a multiple of the scale, downsampled by bicubic interpolation with antialiasing
(``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``: the same a = -0.5 kernel widened by the
scale; the border handling differs from MATLAB's slightly) and rounded to uint8, once per whole image;
training patches are aligned crops of both. The bicubic baseline is :func:`bicubic_up`.

:class:`PatchSampler` hands out (LR, HR) float batches on the 0-1 scale: patch positions uniform over the
training images' pixels, and a random one of the 8 flips / 90-degree rotations (Lim et al. 2017, Sec. 4.2);
batch ``k`` is a pure function of ``(seed, k)``, so ``state_dict()`` is one integer (exact resume). An
"epoch" (``len(sampler)``) is the number of batches whose LR patches add up to the training images' LR
pixels once; with ``shard=(rank, world)`` every rank draws the global batch ``k`` and keeps its slice, so
global batch ``k`` is the same patches for every world size.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reslab.data.loader import epoch_seed
from reslab.errors import ConfigError, DataError

SR_TRAIN = ("astronaut", "rocket", "motorcycle")
SR_TEST = ("chelsea", "coffee")


def _photographs() -> dict[str, Callable[[], np.ndarray]]:
    try:
        from skimage import data
    except ImportError:
        raise DataError("super-resolution data needs scikit-image: pip install scikit-image") from None
    return {
        "astronaut": data.astronaut,
        "rocket": data.rocket,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
        "chelsea": data.chelsea,
        "coffee": data.coffee,
    }


def photograph(name: str) -> torch.Tensor:
    """One of the bundled photographs as uint8 (3, H, W)."""
    photos = _photographs()
    if name not in photos:
        raise ConfigError(f"unknown photograph {name!r}; choose from {', '.join(photos)}")
    return torch.from_numpy(np.ascontiguousarray(photos[name]().transpose(2, 0, 1)))


def _check_scale(scale: int) -> None:
    if scale not in (2, 3, 4, 8):
        raise ConfigError(f"scale must be 2, 3, 4 or 8, got {scale}")


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp_(0, 255).to(torch.uint8)


def bicubic_down(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 (C, H, W) or (N, C, H, W) with H, W multiples of ``scale`` -> uint8 LR (antialiased bicubic)."""
    _check_scale(scale)
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ConfigError(f"image size {h}x{w} is not a multiple of the scale {scale}; crop it first")
    x = hr.float().reshape(-1, *hr.shape[-3:])
    lr = F.interpolate(x, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    return _quantize(lr).reshape(*hr.shape[:-2], h // scale, w // scale)


def bicubic_up(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: uint8 LR (C, h, w) or (N, C, h, w) -> uint8 (..., scale h, scale w)."""
    _check_scale(scale)
    h, w = lr.shape[-2:]
    x = lr.float().reshape(-1, *lr.shape[-3:])
    up = F.interpolate(x, size=(h * scale, w * scale), mode="bicubic", align_corners=False)
    return _quantize(up).reshape(*lr.shape[:-2], h * scale, w * scale)


def mod_crop(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom / right of ``img`` to a multiple of ``scale`` (as the SR papers' ``modcrop``)."""
    h, w = img.shape[-2:]
    return img[..., : h - h % scale, : w - w % scale]


@dataclasses.dataclass
class SRData:
    """High-resolution images (uint8 (3, H, W), multiples of ``scale``) and their bicubic LR versions."""

    scale: int
    train_names: tuple[str, ...]
    train_hr: list[torch.Tensor]
    train_lr: list[torch.Tensor]
    test_names: tuple[str, ...]
    test_hr: list[torch.Tensor]
    test_lr: list[torch.Tensor]
    source: str = ""
    val_names: tuple[str, ...] = ()
    val_hr: list[torch.Tensor] = dataclasses.field(default_factory=list)
    val_lr: list[torch.Tensor] = dataclasses.field(default_factory=list)

    @property
    def in_chans(self) -> int:
        return int(self.train_hr[0].shape[0])

    def __repr__(self) -> str:
        val = f", val={list(self.val_names)}" if self.val_names else ""
        return f"SRData(x{self.scale}, train={list(self.train_names)}{val}, test={list(self.test_names)})"

    def sha256(self) -> str:
        """SHA-256 over every image (names, shapes and bytes of HR and LR): which data a run saw."""
        h = hashlib.sha256()
        for split in ("train", "val", "test"):
            for name, hr, lr in zip(*(getattr(self, f"{split}_{k}") for k in ("names", "hr", "lr"))):
                h.update(f"{split}:{name}:{tuple(hr.shape)}:{tuple(lr.shape)}".encode())
                h.update(hr.contiguous().numpy().tobytes())
                h.update(lr.contiguous().numpy().tobytes())
        return h.hexdigest()


def sr_data(
    scale: int,
    train: Sequence[str] = SR_TRAIN,
    test: Sequence[str] = SR_TEST,
    *,
    images: dict | None = None,
    val_rows: int = 0,
) -> SRData:
    """The default super-resolution data (module docstring) at ``scale``; ``images`` maps names to uint8
    (3, H, W) tensors to use other pictures (``train``/``test`` then name keys of it). ``val_rows``: cut
    the bottom ``val_rows`` rows (rounded down to a multiple of ``scale``) of each training image off as a
    validation image ``<name>-bottom`` (module docstring)."""
    _check_scale(scale)
    if set(train) & set(test):
        raise ConfigError(f"images both in training and test: {sorted(set(train) & set(test))}")
    if val_rows < 0:
        raise ConfigError(f"val_rows must be >= 0, got {val_rows}")
    get = (lambda n: images[n]) if images is not None else photograph
    hr = {n: mod_crop(torch.as_tensor(get(n)), scale).contiguous() for n in (*train, *test)}
    cut = val_rows - val_rows % scale
    val = tuple(f"{n}-bottom" for n in train) if cut else ()
    for n, v in zip(train, val):
        if hr[n].shape[-2] < 2 * cut:
            raise ConfigError(f"val_rows={val_rows} leaves less than half of {n!r} ({hr[n].shape[-2]} rows)")
        hr[n], hr[v] = hr[n][..., :-cut, :].contiguous(), hr[n][..., -cut:, :].contiguous()
    lr = {n: bicubic_down(img, scale) for n, img in hr.items()}  # each part on its own: no shared pixels
    try:
        import skimage

        source = f"skimage.data (scikit-image {skimage.__version__})" if images is None else "given images"
    except ImportError:
        source = "given images"
    return SRData(
        scale,
        tuple(train),
        [hr[n] for n in train],
        [lr[n] for n in train],
        tuple(test),
        [hr[n] for n in test],
        [lr[n] for n in test],
        source,
        val,
        [hr[n] for n in val],
        [lr[n] for n in val],
    )


class PatchSampler:
    """Random aligned (LR, HR) training patches: LR ``patch`` x ``patch``, HR ``scale`` times larger.

    Batches are float32 on ``device``, on the 0-1 scale: ``(lr (B, C, p, p), hr (B, C, sp, sp))``. The
    images live on the device once, packed flat; a batch is one gather for LR and one for HR (no
    per-patch Python), then a random flip / transpose per patch (``augment``). Batch ``k`` depends on
    ``(seed, k)`` only: :meth:`state_dict` is ``{"step": k, ...}`` (with ``epoch`` and ``position``, the
    same point counted in epochs of ``len(self)`` batches). ``batch_size`` is this rank's share of the
    global batch ``batch_size * world`` (``shard=(rank, world)``).
    """

    def __init__(
        self,
        data: SRData,
        patch: int,
        batch_size: int,
        *,
        device: Any = "cpu",
        seed: int = 0,
        augment: bool = True,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if patch < 1 or batch_size < 1:
            raise ConfigError(f"patch and batch_size must be positive, got {patch}, {batch_size}")
        small = [tuple(lr.shape[-2:]) for lr in data.train_lr if min(lr.shape[-2:]) < patch]
        if small:
            raise ConfigError(
                f"LR patch {patch} is larger than a training image ({small[0]} at x{data.scale})"
            )
        rank, world = (int(v) for v in shard)
        if not 0 <= rank < world:
            raise ConfigError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
        self.scale, self.patch, self.batch_size = data.scale, int(patch), int(batch_size)
        self.rank, self.world_size = rank, world
        self.device, self.seed, self.augment = torch.device(device), int(seed), bool(augment)
        self.step = 0
        self._chans = data.in_chans
        sizes = torch.tensor([lr.shape[-2:] for lr in data.train_lr])  # (n, 2) LR h, w
        self._sizes = sizes
        positions = (sizes[:, 0] - patch + 1) * (sizes[:, 1] - patch + 1)
        self._weights = positions.double() / positions.sum()
        pixels = int((sizes[:, 0] * sizes[:, 1]).sum())
        self._per_epoch = max(1, -(-pixels // (self.patch**2 * self.batch_size * world)))
        self._lr, self._lr_base = self._pack(data.train_lr)
        self._hr, self._hr_base = self._pack(data.train_hr)

    def __len__(self) -> int:
        """Batches per epoch: global batches whose LR patches add up to the training LR pixels once."""
        return self._per_epoch

    def _pack(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        flat = torch.cat([im.reshape(-1) for im in images]).to(self.device)
        base = torch.tensor([0] + [im.numel() for im in images[:-1]]).cumsum(0)
        return flat, base

    def _gather(
        self,
        flat: torch.Tensor,
        base: torch.Tensor,
        img: torch.Tensor,
        y: torch.Tensor,
        x: torch.Tensor,
        s: int,
    ) -> torch.Tensor:
        """(B, C, p s, p s) crops at (y s, x s) of images ``img`` (sizes ``self._sizes * s``)."""
        h, w = (self._sizes[img] * s).unbind(1)
        c, p = self._chans, self.patch * s
        r = torch.arange(p)
        idx = (
            base[img].view(-1, 1, 1, 1)
            + (torch.arange(c).view(1, c, 1, 1) * (h * w).view(-1, 1, 1, 1))
            + ((y * s).view(-1, 1, 1, 1) + r.view(1, 1, p, 1)) * w.view(-1, 1, 1, 1)
            + (x * s).view(-1, 1, 1, 1)
            + r.view(1, 1, 1, p)
        )
        return flat[idx.to(flat.device)]

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's part of global batch number ``k`` (a pure function of ``seed`` and ``k``)."""
        g = torch.Generator().manual_seed(epoch_seed(self.seed, k))
        b = self.batch_size * self.world_size
        img = torch.multinomial(self._weights, b, replacement=True, generator=g)
        room = self._sizes[img] - self.patch + 1
        y = (torch.rand(b, generator=g) * room[:, 0]).long()
        x = (torch.rand(b, generator=g) * room[:, 1]).long()
        flips = torch.rand(b, 3, generator=g) < 0.5
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        img, y, x, flips = img[mine], y[mine], x[mine], flips[mine]
        lr = self._gather(self._lr, self._lr_base, img, y, x, 1)
        hr = self._gather(self._hr, self._hr_base, img, y, x, self.scale)
        if self.augment:
            flips = flips.to(self.device).view(-1, 3, 1, 1, 1)
            lr, hr = (self._dihedral(t, flips) for t in (lr, hr))
        return lr.float().div_(255), hr.float().div_(255)

    @staticmethod
    def _dihedral(t: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        t = torch.where(flips[:, 0], t.flip(-1), t)
        t = torch.where(flips[:, 1], t.flip(-2), t)
        return torch.where(flips[:, 2], t.transpose(-1, -2), t)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches forever from the current step on."""
        while True:
            k = self.step
            self.step += 1
            yield self.batch(k)

    batches = __iter__

    @property
    def epoch(self) -> int:
        return self.step // self._per_epoch

    @property
    def position(self) -> int:
        """Batches of the current epoch already handed out."""
        return self.step % self._per_epoch

    def state_dict(self) -> dict[str, int]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "patch": self.patch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at ``epoch`` / ``position`` if given (a position may be rewritten for another world
        size of the same global batch), else at ``step``."""
        for key in ("batch_size", "world_size", "patch"):
            if key in state and int(state[key]) != getattr(self, key):
                raise ConfigError(
                    f"sampler state is for {key}={int(state[key])}, this one has {getattr(self, key)}"
                )
        self.seed = int(state.get("seed", self.seed))
        if "epoch" in state and "position" in state:
            self.step = int(state["epoch"]) * self._per_epoch + int(state["position"])
        else:
            self.step = int(state["step"])
