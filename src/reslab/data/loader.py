"""Batches from uint8 images that live on the training device; augmentation batched there (airbench-style).

:class:`DeviceLoader` copies the images to the device once. For each epoch it draws, on the CPU and from a
generator seeded with ``(seed, epoch)`` only, the whole epoch's plan at once: the permutation, the crop
offsets and the flip mask; these small index tensors go to the device and every batch is then a handful of
batched tensor ops: one flat gather that picks, crops and flips at once, then the normalization. No
per-image Python anywhere.

- Padding is with zeros on the raw uint8 image, i.e. *before* mean subtraction: a padded pixel is black,
  ``-mean/std`` after normalization. (The paper says "4 pixels are padded on each side" of the image whose
  mean is then subtracted; implementations that pad the normalized image pad with the mean instead.)
- Normalization: ``(x / 255 - mean) / std`` per channel, computed in float32 as ``x * a - b`` with
  ``a = 1 / (255 std)``, ``b = mean / std``, then cast to ``dtype`` (e.g. bfloat16).
- The loader's state is ``(epoch, position)``: the plan of an epoch is a pure function of ``seed`` and
  ``epoch``, so a loader restored from :meth:`DeviceLoader.state_dict` yields bit-identical remaining
  batches.
- Sharding (``shard=(rank, world)``): every rank draws the same global plan; rank ``r`` takes positions
  ``r, r + world, r + 2 world, ...`` of it. ``batch_size`` is per rank (global batch
  ``batch_size * world``). With ``drop_last`` the plan is cut to whole global batches; without it, it is
  padded by wrapping around (as ``DistributedSampler``) so that every rank has the same number of batches.

:class:`SceneLoader` (the detection/segmentation scenes, :mod:`reslab.data.scenes`) shares that resume
state and iteration (:class:`ResumableEpochs`): its plan is an order and flips, and the batches are made
by its caller's function.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reslab.errors import ConfigError


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for ``(seed, epoch)``: stable across runs, platforms and Python's hash randomization."""
    digest = hashlib.sha256(f"reslab-loader:{int(seed)}:{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _as_tensor(a: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else torch.as_tensor(a)
    return t if dtype is None else t.to(dtype)


def _as_images(x: Any, who: str) -> torch.Tensor:
    """``x`` as a tensor; :class:`ConfigError` unless uint8 images (N, C, H, W)."""
    x = _as_tensor(x)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ConfigError(f"{who} needs uint8 images (N, C, H, W), got {tuple(x.shape)} {x.dtype}")
    return x


def _norm_consts(mean: Sequence[float], std: Sequence[float], channels: int, device: torch.device):
    mean_t = torch.as_tensor(mean, dtype=torch.float64).flatten()
    std_t = torch.as_tensor(std, dtype=torch.float64).flatten()
    if mean_t.numel() == 1:
        mean_t = mean_t.expand(channels)
    if std_t.numel() == 1:
        std_t = std_t.expand(channels)
    if mean_t.numel() != channels or std_t.numel() != channels:
        raise ConfigError(
            f"mean/std need {channels} values (one per channel), got {len(mean_t)}/{len(std_t)}"
        )
    if (std_t <= 0).any():
        raise ConfigError(f"std must be positive, got {std_t.tolist()}")
    scale = (1.0 / (255.0 * std_t)).float().view(1, channels, 1, 1).to(device)
    shift = (mean_t / std_t).float().view(1, channels, 1, 1).to(device)
    return scale, shift


def normalize(
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 (B, C, H, W) -> ``(x / 255 - mean) / std`` in ``dtype``, from the constants of :func:`norm_constants`."""
    out = x.to(torch.float32).mul_(scale).sub_(shift)
    if dtype != torch.float32:
        out = out.to(dtype)
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def norm_constants(mean: Sequence[float], std: Sequence[float], channels: int, device: Any = "cpu"):
    """``(scale, shift)`` of shape (1, C, 1, 1) such that ``x * scale - shift == (x / 255 - mean) / std``."""
    return _norm_consts(mean, std, channels, torch.device(device))


def _crop_flip_index(
    idx: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor | None, shape: Sequence[int], h: int, w: int
) -> torch.Tensor:
    """Flat indices into padded images of ``shape`` (N, C, Hp, Wp) of the H x W windows at ``offsets``
    (dy, dx) of images ``idx``, mirrored left-right where ``flips``: (B * C * H * W,) int64."""
    _, c, hp, wp = shape
    b, dev = len(idx), idx.device
    i = torch.arange(h, device=dev)
    j = torch.arange(w, device=dev)
    base = (idx * (c * hp * wp)).view(b, 1, 1, 1) + (torch.arange(c, device=dev) * (hp * wp)).view(1, c, 1, 1)
    rows = ((offsets[:, 0:1] + i) * wp).view(b, 1, h, 1)
    cols = offsets[:, 1:2] + j
    if flips is not None:
        cols = torch.where(flips[:, None], offsets[:, 1:2] + (w - 1) - j, cols)
    return (base + rows + cols.view(b, 1, 1, w)).view(-1)


def crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor | None, pad: int) -> torch.Tensor:
    """Zero-pad ``x`` (B, C, H, W) by ``pad`` and take, per image, the H x W window at ``offsets[b] = (dy, dx)``
    (``0 <= dy, dx <= 2 pad``), mirrored left-right where ``flips[b]``: one gather for the whole batch."""
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad)) if pad > 0 else x.contiguous()
    fi = _crop_flip_index(torch.arange(b, device=x.device), offsets, flips, xp.shape, h, w)
    return xp.view(-1).index_select(0, fi).view(b, c, h, w)


def cutout_mask(centres: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """(B, H, W) bool: per image, the ``size`` x ``size`` square whose centre is ``centres[b] = (cy, cx)``
    (rows ``cy - size // 2`` up to ``cy - size // 2 + size``, likewise columns), clipped at the borders."""
    lo = centres - size // 2
    rows = torch.arange(h, device=centres.device)
    cols = torch.arange(w, device=centres.device)
    in_r = (rows >= lo[:, :1]) & (rows < lo[:, :1] + size)
    in_c = (cols >= lo[:, 1:]) & (cols < lo[:, 1:] + size)
    return in_r[:, :, None] & in_c[:, None, :]


class ResumableEpochs:
    """The exact-resume state of a loader whose epoch plan is a pure function of ``(seed, epoch)``:
    ``(epoch, position)`` plus the sizes that must not change across a resume (``num_samples``,
    ``batch_size`` per rank, ``world_size``), and the iteration over the rest of an epoch. A subclass
    sets those attributes and ``_plan_cache = None``, defines ``__len__`` (batches per epoch), ``_draw``
    (this rank's plan of an epoch: :meth:`_plan` caches it) and ``_batch`` (the batch at a slice of it)."""

    epoch: int
    position: int
    seed: int
    num_samples: int
    batch_size: int
    world_size: int
    _plan_cache: tuple[int, Any] | None

    def __len__(self) -> int:
        raise NotImplementedError

    def _draw(self, epoch: int) -> Any:
        raise NotImplementedError

    def _batch(self, plan: Any, sl: slice) -> Any:
        raise NotImplementedError

    def _plan(self, epoch: int) -> Any:
        """This rank's plan of ``epoch`` (:meth:`_draw`), drawn once per epoch."""
        if self._plan_cache is None or self._plan_cache[0] != epoch:
            self._plan_cache = (epoch, self._draw(epoch))
        return self._plan_cache[1]

    def _rollover(self) -> None:
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0

    def __iter__(self) -> Iterator[Any]:
        """The rest of the current epoch (all of it, unless resumed mid-epoch); then the epoch advances."""
        self._rollover()
        epoch = self.epoch
        plan = self._plan(epoch)
        while self.epoch == epoch and self.position < len(self):
            i = self.position
            self.position += 1  # counted as consumed once handed out: a checkpoint after it skips it
            yield self._batch(plan, slice(i * self.batch_size, (i + 1) * self.batch_size))
        if self.epoch == epoch:
            self._rollover()

    def batches(self) -> Iterator[Any]:
        """Batches forever, epoch after epoch (for iteration-based schedules)."""
        while True:
            yield from self

    def state_dict(self) -> dict[str, int]:
        epoch, position = (self.epoch + 1, 0) if self.position >= len(self) else (self.epoch, self.position)
        return {
            "epoch": epoch,
            "position": position,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("num_samples", "batch_size", "world_size"):
            if key in state and int(state[key]) != getattr(self, key):
                raise ConfigError(
                    f"loader state is for {key}={int(state[key])}, this loader has {getattr(self, key)}"
                )
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ConfigError(f"loader state position {position} outside [0, {len(self)}]")
        self.seed = int(state.get("seed", self.seed))
        self.epoch, self.position = int(state["epoch"]), position
        self._plan_cache = None


def _check_sizes(shard: tuple[int, int], batch_size: int, pad: int, cutout: int) -> tuple[int, int]:
    """``(rank, world_size)`` of ``shard``; :class:`ConfigError` for a bad shard, batch size, pad or cutout."""
    rank, world = (int(v) for v in shard)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if pad < 0:
        raise ConfigError(f"pad must be >= 0, got {pad}")
    if cutout < 0:
        raise ConfigError(f"cutout must be >= 0, got {cutout}")
    return rank, world


class DeviceLoader(ResumableEpochs):
    """One epoch of (normalized float images, int64 labels) batches per ``iter()``; resumable exactly.

    Args:
        x: uint8 images (N, C, H, W) (tensor or numpy), copied to ``device`` once (zero-padded by
            ``pad`` when ``augment``: the crop is then a single flat gather).
        y: integer labels (N,).
        batch_size: images per batch *per rank*.
        device: where the data lives and the batches are made.
        mean, std: per-channel statistics on the 0-1 scale (e.g. ``ArrayDataset.mean``/``std``).
        augment: random crop of the zero-padded image (``pad`` pixels) and, if ``flip``, a random
            horizontal flip with probability 1/2.
        cutout: with ``augment``, Cutout (DeVries & Taylor 2017): a ``cutout`` x ``cutout`` square at a
            uniformly random centre (clipped at the borders) is set to 0 after normalization, i.e. to the
            data set's mean. 0: off. Not in the ResNet paper; used by short high-accuracy recipes.
        seed: the whole stream (order and augmentation) is a function of ``seed`` and the epoch.
        shuffle: a random permutation per epoch (else the stored order).
        drop_last: drop the last incomplete (global) batch.
        shard: ``(rank, world_size)`` for data-parallel training.
        dtype, channels_last: dtype and memory format of the image batches.

    ``len(loader)`` is the number of batches per epoch; :meth:`batches` cycles epochs forever (for
    iteration-based schedules); :meth:`state_dict` / :meth:`load_state_dict` hold ``epoch`` and
    ``position`` (batches already handed out in this epoch), plain ints that load with ``weights_only``.
    """

    def __init__(
        self,
        x: Any,
        y: Any,
        batch_size: int,
        *,
        device: Any = "cpu",
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        augment: bool = False,
        flip: bool = True,
        pad: int = 4,
        cutout: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        shard: tuple[int, int] = (0, 1),
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        x, y = _as_images(x, "DeviceLoader"), _as_tensor(y)
        if y.ndim != 1 or len(y) != len(x):
            raise ConfigError(
                f"DeviceLoader needs one label per image: {len(x)} images, labels {tuple(y.shape)}"
            )
        rank, world = _check_sizes(shard, batch_size, pad, cutout)
        self.device = torch.device(device)
        self.image_shape = tuple(int(v) for v in x.shape[1:])  # (C, H, W) of the batches
        self._n = len(x)
        # On the device once: the zero-padded images when augmenting (crop = one flat gather), else as is.
        src = x.to(self.device)
        if augment and pad > 0:
            src = F.pad(src, (pad, pad, pad, pad))
        self._src = src.contiguous()
        self.y = y.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.mean, self.std = tuple(float(m) for m in np.ravel(mean)), tuple(float(s) for s in np.ravel(std))
        self._scale, self._shift = _norm_consts(self.mean, self.std, x.shape[1], self.device)
        self.augment, self.flip, self.pad = bool(augment), bool(flip), int(pad)
        self.cutout = int(cutout) if augment else 0
        self.seed, self.shuffle, self.drop_last = int(seed), bool(shuffle), bool(drop_last)
        self.rank, self.world_size = rank, world
        self.dtype, self.channels_last = dtype, bool(channels_last)
        self.epoch = 0
        self.position = 0
        self._plan_cache = None
        n = len(x)
        gb = self.batch_size * world
        if drop_last:
            self._per_rank = (n // gb) * self.batch_size
        else:
            self._per_rank = -(-n // world)
        if len(self) == 0:
            raise ConfigError(
                f"{n} images give no batch of {self.batch_size} x {world} rank(s) with drop_last"
            )

    @property
    def num_samples(self) -> int:
        return self._n

    def __len__(self) -> int:
        return -(-self._per_rank // self.batch_size)

    # ------------------------------------------------------------------------------------ the plan

    def _draw(self, epoch: int) -> tuple[torch.Tensor, ...]:
        """This rank's (indices, offsets, flips, cutout centres) for ``epoch``, on the device."""
        n, world = self.num_samples, self.world_size
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        total = self._per_rank * world
        if total > n:  # no drop_last: wrap around so every rank gets the same count
            order = order.repeat(-(-total // n))
        order = order[:total]
        span = 2 * self.pad + 1
        offsets = torch.randint(0, span, (total, 2), generator=g) if self.augment else None
        flips = (torch.rand(total, generator=g) < 0.5) if (self.augment and self.flip) else None
        _, h, w = self.image_shape
        centres = (
            torch.stack(
                [torch.randint(0, h, (total,), generator=g), torch.randint(0, w, (total,), generator=g)], 1
            )
            if self.cutout
            else None
        )  # drawn last: the order, crops and flips of a run without Cutout are unchanged
        sl = slice(self.rank, total, world)
        return tuple(
            t[sl].to(self.device) if t is not None else None for t in (order, offsets, flips, centres)
        )

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The sample indices this rank visits in ``epoch`` (default: the current one), in order."""
        return self._plan(self.epoch if epoch is None else epoch)[0].cpu()

    def _batch(self, plan: tuple[torch.Tensor, ...], sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
        idx, offsets, flips, centres = plan
        bidx = idx[sl]
        c, h, w = self.image_shape
        if self.augment:
            fl = flips[sl] if flips is not None else None
            fi = _crop_flip_index(bidx, offsets[sl], fl, self._src.shape, h, w)
            xb = self._src.view(-1).index_select(0, fi).view(len(bidx), c, h, w)
        else:  # a 2-D row gather: much faster than indexing the 4-D tensor on CPU
            xb = self._src.view(self._n, -1).index_select(0, bidx).view(len(bidx), c, h, w)
        xb = normalize(xb, self._scale, self._shift, self.dtype, self.channels_last)
        if centres is not None:
            xb.masked_fill_(cutout_mask(centres[sl], self.cutout, h, w)[:, None], 0)
        return xb, self.y[bidx]

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning."""
        self.epoch, self.position = int(epoch), 0


class SceneLoader(ResumableEpochs):
    """Training batches of scenes, one epoch per ``iter()``, resumable exactly (the
    :class:`reslab.data.DeviceLoader` interface): epoch ``e`` visits a permutation drawn from
    ``(seed, e)`` with one horizontal flip draw per scene, so the stream is a function of the seed, the
    epoch and the position alone. ``batch_size`` is per rank; rank ``r`` of ``world`` takes positions
    ``r::world`` of the epoch's order (global batch ``i`` is the same scenes for any world size);
    incomplete global batches are dropped."""

    def __init__(
        self,
        make_batch: Callable[[torch.Tensor, torch.Tensor], Any],
        num_samples: int,
        batch_size: int,
        *,
        seed: int,
        augment: bool,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.make_batch, self.num_samples, self.augment = make_batch, num_samples, augment
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.rank, self.world_size = (int(v) for v in shard)
        self.epoch, self.position = 0, 0
        if self.batch_size < 1 or len(self) == 0:
            raise ConfigError(
                f"{num_samples} training scenes give no batch of {batch_size} x {self.world_size} rank(s)"
            )
        self._plan_cache = None

    def __len__(self) -> int:
        return self.num_samples // (self.batch_size * self.world_size)

    def _draw(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (scene indices, flips) of ``epoch``."""
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        total = len(self) * self.batch_size * self.world_size
        order = torch.randperm(self.num_samples, generator=g)[:total]
        flips = torch.rand(total, generator=g) < 0.5 if self.augment else torch.zeros(total, dtype=torch.bool)
        sl = slice(self.rank, total, self.world_size)
        return order[sl], flips[sl]

    def _batch(self, plan: tuple[torch.Tensor, torch.Tensor], sl: slice) -> Any:
        order, flips = plan
        return self.make_batch(order[sl], flips[sl])


def iterate_eval(
    x: Any,
    y: Any,
    batch_size: int,
    device: Any = "cpu",
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every sample once, in order, normalized, no augmentation; the last batch may be smaller.

    ``x`` (uint8 (N, C, H, W)) and ``y`` are moved to ``device`` once per call (no copy if already there:
    keep evaluation sets on the device to evaluate often).
    """
    x, y = _as_images(x, "iterate_eval"), _as_tensor(y)
    dev = torch.device(device)
    x, y = x.to(dev), y.to(dev, torch.int64)
    scale, shift = _norm_consts(mean, std, x.shape[1], dev)
    for i in range(0, len(x), int(batch_size)):
        yield normalize(x[i : i + batch_size], scale, shift, dtype, channels_last), y[i : i + batch_size]
