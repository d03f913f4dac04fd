"""Data parallelism (torchrun + DistributedDataParallel): the rank/world of this process, the process
group, and the few collectives the loop needs (replicas in sync, BN buffers broadcast, metrics reduced
over the ranks, the loader position in world-independent terms). docs/distributed.md tells the whole
story; in one line: ``batch_size`` is the global batch, each rank takes ``batch_size // world_size`` of
it, and every rank runs the same loop, so every collective is called at the same steps on every rank.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from reslab._device import resolve_device
from reslab._io import fault_point
from reslab.config import TrainConfig
from reslab.errors import CheckpointError, ConfigError, ReslabError
from reslab.tasks.base import Dist


def init_distributed(cfg: TrainConfig) -> Dist:
    """The process group from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``), or a one-process :class:`Dist` when ``WORLD_SIZE`` is unset or 1.

    Backend nccl on CUDA (device ``cuda:LOCAL_RANK``), gloo on CPU; collectives time out after
    ``cfg.dist_timeout`` minutes. ``cfg.batch_size`` is the *global* batch: it must divide by the world
    size (each rank takes ``batch_size // world_size``). Checks run before the group is created, so every
    rank fails with the same one-line error and nothing waits.
    """
    env = os.environ
    try:
        world = int(env.get("WORLD_SIZE") or 1)
        rank = int(env.get("RANK") or 0)
        local = int(env.get("LOCAL_RANK") or 0)
    except ValueError:
        raise ConfigError(
            "WORLD_SIZE, RANK and LOCAL_RANK must be integers (as torchrun sets them)"
        ) from None
    if world <= 1:
        return Dist()
    if not 0 <= rank < world or "MASTER_ADDR" not in env or "MASTER_PORT" not in env:
        raise ConfigError(
            f"WORLD_SIZE={world} but RANK/MASTER_ADDR/MASTER_PORT are missing or invalid; "
            "start distributed runs with torchrun"
        )
    if cfg.batch_size % world:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is the global batch and must divide by the {world} ranks"
        )
    device = resolve_device(cfg.device)
    if cfg.sync_bn and device.type != "cuda":
        raise ConfigError("sync_bn needs CUDA (torch's SyncBatchNorm has no CPU kernel); drop --sync-bn")
    import datetime

    import torch.distributed as td

    if not td.is_available():
        raise ConfigError("this torch build has no torch.distributed")
    timeout = datetime.timedelta(minutes=cfg.dist_timeout)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) visible")
        torch.cuda.set_device(local)
    owns = not td.is_initialized()
    if owns:
        td.init_process_group(backend, timeout=timeout, rank=rank, world_size=world)
    elif td.get_world_size() != world:
        raise ConfigError(f"a process group of {td.get_world_size()} ranks exists, WORLD_SIZE is {world}")
    ctrl = td.new_group(backend="gloo", timeout=timeout) if td.get_backend() != "gloo" else None
    return Dist(rank=td.get_rank(), world_size=world, local_rank=local, owns_group=owns, ctrl=ctrl)


def assert_replicas_in_sync(model: nn.Module, dist: Dist) -> None:
    """Raise if the ranks' copies of ``model`` (weights and buffers) differ: a per-tensor checksum
    (sum and sum of squares in float64) must be bit-equal on every rank. One small all-reduce pair."""
    if not dist.enabled:
        return
    import torch.distributed as td

    ts = list(model.state_dict().values())
    dev = ts[0].device if ts else torch.device("cpu")
    sums = torch.stack(
        [torch.stack([t.detach().double().sum(), t.detach().double().square().sum()]) for t in ts]
    ).to(dev)
    hi, lo = sums.clone(), sums.clone()
    td.all_reduce(hi, op=td.ReduceOp.MAX)
    td.all_reduce(lo, op=td.ReduceOp.MIN)
    if not torch.equal(hi, lo):
        bad = [k for k, d in zip(model.state_dict(), (hi != lo).any(1).tolist()) if d]
        raise ReslabError(f"the {dist.world_size} replicas differ after training (e.g. {bad[0]!r})")


def sync_buffers(model: nn.Module, dist: Dist) -> None:
    """Copy rank 0's buffers (BN running statistics) to every rank. DDP does so at the start of each
    forward; each rank then updates them from its own shard, so before an evaluation or at the end the
    ranks' statistics differ unless synchronized here."""
    if dist.enabled:
        for b in model.buffers():
            torch.distributed.broadcast(b.data, src=0)


def fault(kind: str, n: int, dist: Dist) -> bool:
    """:func:`reslab._io.fault_point`, fired only on rank ``RESLAB_FAULT_RANK`` when that is set (tests)."""
    only = os.environ.get("RESLAB_FAULT_RANK")
    if only is not None and only.strip() != str(dist.rank):
        return False
    return fault_point(kind, n)


def is_peer_failure(e: BaseException) -> bool:
    """Whether ``e`` is a collective that failed because a peer died, closed its connection or timed out."""
    dist_error = getattr(torch.distributed, "DistError", ())
    text = str(e).lower()
    return isinstance(e, dist_error) or any(
        w in text for w in ("gloo", "nccl", "connection reset", "connection closed", "timed out")
    )


def loader_state(loader: Any, dist: Dist) -> dict[str, Any]:
    """The loader position in world-independent terms: ``epoch`` and ``samples`` (global samples of the
    epoch already consumed), beside the loader's own (per-rank) fields."""
    s = dict(loader.state_dict())
    s["samples"] = int(s["position"]) * loader.batch_size * dist.world_size
    return s


def load_loader_state(loader: Any, state: dict[str, Any], dist: Dist) -> None:
    """Restore a position saved by :func:`loader_state` with any world size of the same global batch:
    global batch ``i`` is the same samples for every world size (rank ``r`` takes positions ``r::world``)."""
    s = dict(state)
    if "samples" in s:
        per_step = loader.batch_size * dist.world_size
        if int(s["samples"]) % per_step:
            raise CheckpointError(
                f"the checkpoint's loader stopped at sample {s['samples']}, not a multiple of the global "
                f"batch {per_step}"
            )
        s["position"] = int(s["samples"]) // per_step
        for key in ("batch_size", "world_size"):
            if key in s:
                s[key] = getattr(loader, key)
    loader.load_state_dict(s)
