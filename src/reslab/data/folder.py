"""Training batches from an ImageNet-style folder, with the :class:`reslab.data.DeviceLoader` interface the
loop uses (``len``, ``batches()``, ``state_dict()``/``load_state_dict()``).

The images are decoded and augmented by ``reslab.data.make_imagefolder_loaders``'s dataset and
transforms in worker processes; the order is a permutation drawn from ``(seed, epoch)`` only, so a resumed
run visits exactly the remaining images of its epoch. (The random crops after a mid-epoch resume differ
from an uninterrupted run's: worker RNG streams restart; resuming at an epoch boundary is exact.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from reslab.data.imagefolder import usable_workers


class _EpochSampler(Sampler[int]):
    def __init__(self, owner: FolderLoader) -> None:
        self.owner = owner

    def __iter__(self) -> Iterator[int]:
        o = self.owner
        order = o.epoch_order(o.epoch)
        start = o.position * o.batch_size
        return iter(order[start : o.steps * o.batch_size].tolist())

    def __len__(self) -> int:
        o = self.owner
        return (o.steps - o.position) * o.batch_size


class FolderLoader:
    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        *,
        device: torch.device,
        workers: int,
        seed: int,
        channels_last: bool,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.device = device
        self.workers = usable_workers(workers)
        self.seed = int(seed)
        self.channels_last = channels_last
        self.rank, self.world_size = shard
        self.steps = len(dataset) // (self.batch_size * self.world_size)
        if self.steps == 0:
            from reslab.errors import ConfigError

            raise ConfigError(f"{len(dataset)} training images give no batch of {self.batch_size}")
        self.epoch = 0
        self.position = 0

    def __len__(self) -> int:
        return self.steps

    def epoch_order(self, epoch: int) -> torch.Tensor:
        from reslab.data.loader import epoch_seed

        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(len(self.dataset), generator=g)
        return order[self.rank :: self.world_size]

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            if self.position >= self.steps:
                self.epoch, self.position = self.epoch + 1, 0
            g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
            loader = DataLoader(
                self.dataset,
                self.batch_size,
                sampler=_EpochSampler(self),
                drop_last=True,
                num_workers=self.workers,
                pin_memory=self.device.type == "cuda",
                generator=g,
            )
            for x, y in loader:
                self.position += 1
                x = x.to(self.device, non_blocking=True)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                yield x, y.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, int]:
        if self.position >= self.steps:
            return {"epoch": self.epoch + 1, "position": 0, "seed": self.seed}
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.seed = int(state.get("seed", self.seed))
