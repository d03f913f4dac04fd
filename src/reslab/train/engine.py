"""The training loop: ``train(cfg, out_dir) -> summary``. Flat on purpose: setup, then a loop of
schedule -> step -> (log) -> (evaluate) -> (checkpoint), then the summary. No callback framework.

What it implements of He et al. 2016: mini-batch SGD with momentum and weight decay on the
cross-entropy loss (Sec. 3.4 for ImageNet, Sec. 4.2 for CIFAR: batch 128, lr 0.1 divided by 10 at 32k
and 48k iterations, 64k iterations, 4-pixel padding + random crop + flip, a 45k/5k train/val split for
model selection; the ``cifar_paper`` recipe). Deviations, each a config choice: inputs are normalized
per channel (mean/std of the training set) where the paper subtracts the per-pixel mean; BN, ReLU and
initialization are the models' business (:mod:`reslab.models`); the ``fashion_mnist*`` recipes use a
one-cycle schedule, label smoothing and Nesterov momentum, which the paper does not.

Model selection: ``checkpoints/best`` is the evaluation with the lowest *validation* error when there is
a validation split (``val_split``), else the lowest training error over the evaluation interval. The
test set is reported in ``metrics.csv`` but never used to choose anything.

Where things happen (for later extensions):

- :func:`_wrap_model` is the one place that wraps the model for execution (DDP, ``torch.compile``);
  ``model`` stays the raw module whose weights are saved.
- Data parallel (torchrun, :func:`init_distributed`; docs/distributed.md): ``batch_size`` is the global
  batch (each rank takes ``batch_size // world_size``), the learning rate is unchanged; evaluation and the
  log windows are all-reduced; checkpoints hold the loader position in global samples.
- :class:`_Run` writes every file, and only when ``dist.is_main`` (rank 0).
- Host syncs: the loss/error sums stay on the device and are read every ``log_every`` steps; the
  non-finite-loss guard reads a one-step-old flag (CUDA) or the loss itself (CPU, where reading a
  scalar costs no device sync).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import errno
import functools
import math
import os
import platform
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab._device import resolve_device
from reslab._io import fault_point, write_json, write_text
from reslab.errors import CheckpointError, ConfigError, ReslabError
from reslab.train import checkpoint as ckpt
from reslab.train.config import RESUME_KEYS, TrainConfig, config_to_yaml, read_yaml
from reslab.train.evaluate import autocast_ctx, evaluate
from reslab.train.precision import precision_name, resolve_amp, slow_bf16_warning
from reslab.train.schedule import Schedule

METRICS_COLUMNS = (
    "step", "epoch", "lr", "train_loss", "train_error", "val_error", "test_error", "images_per_s", "elapsed",
)  # fmt: skip
LOG_COLUMNS = ("step", "epoch", "lr", "loss", "error")


class TrainingDiverged(ReslabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ------------------------------------------------------------------------------------------ setup


@dataclass
class Dist:
    """Data-parallel rank/world: one process, or the process group :func:`init_distributed` set up from
    torchrun's environment. ``ctrl`` is the group for host-side agreement (gloo; ``None``: the default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process created the default group (and destroys it at the end)
    ctrl: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier(group=self.ctrl)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (a host-side all-reduce on the gloo group)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int32)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.ctrl)
        return bool(t.item())

    def close(self) -> None:
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.owns_group = False


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


def _fault(kind: str, n: int, dist: Dist) -> bool:
    """:func:`reslab._io.fault_point`, fired only on rank ``RESLAB_FAULT_RANK`` when that is set (tests)."""
    only = os.environ.get("RESLAB_FAULT_RANK")
    if only is not None and only.strip() != str(dist.rank):
        return False
    return fault_point(kind, n)


def default_run_dir(cfg: TrainConfig, root: str | os.PathLike = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # one plain folder name: a model/dataset name such as "../x" or "/tmp/x" cannot leave ``root``
    name = re.sub(r"[^A-Za-z0-9._+=-]", "_", f"{cfg.model}-{cfg.dataset}-{stamp}").lstrip(".")
    return Path(root) / name


@functools.lru_cache(maxsize=2)
def _load_dataset(name: str, data_dir: str | None, download: bool) -> Any:
    """``load_dataset``, cached in the process: a sweep of many short runs reads the files once."""
    from reslab.data import load_dataset

    return load_dataset(name, data_dir, download=download)


@functools.cache
def _git_revision() -> str | None:
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    import numpy

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        from importlib.metadata import version

        out["reslab"] = version("reslab")
    except Exception:
        out["reslab"] = "unknown"
    return out


def _model_depth(name: str, kwargs: dict[str, Any]) -> int:
    try:
        from reslab.models.registry import get_entry

        return int(kwargs.get("depth", get_entry(name).depth))
    except Exception:
        return 0


def _check_model_config(cfg: TrainConfig) -> None:
    """Build the model on the meta device (instant): an unknown name or bad depth fails before data loads."""
    from reslab.models import create_model

    with torch.device("meta"):
        create_model(cfg.model, **cfg.model_kwargs)


def _build_model(cfg: TrainConfig, num_classes: int, in_chans: int, *, init: bool = True) -> nn.Module:
    """The model of ``cfg``; with ``init`` (a fresh run), loaded from ``cfg.init_from`` if set. A resumed
    run skips that (its checkpoint holds every weight), so it needs neither the file nor a download."""
    from reslab.models import create_model

    kwargs = dict(cfg.model_kwargs)
    if cfg.init_from and init:
        model = create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, **kwargs)
        _load_init(model, cfg.init_from, download=cfg.download)
        if model.num_classes != num_classes:  # type: ignore[attr-defined]
            model.reset_classifier(num_classes)  # type: ignore[operator]  (updates model_kwargs too)
        return model
    return create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, **kwargs)


def _load_init(model: nn.Module, path: str, *, download: bool = False) -> None:
    """Load pretrained weights (reslab run/checkpoint or torchvision state dict; ``"torchvision"``:
    torchvision's ImageNet weights for the model from the torch.hub cache, fetched only if ``download``).
    A classifier of another size is loaded at the checkpoint's size and then replaced by the caller
    (``num_classes``)."""
    from reslab.models.weights import load_checkpoint, read_state_dict, resolve_checkpoint

    if path == "torchvision":
        from reslab.models.hub import torchvision_weights

        file = torchvision_weights(model.model_name, download=download)  # type: ignore[attr-defined]
    elif path == "akamaster":
        from reslab.models.convert import akamaster_weights

        file = akamaster_weights(model.model_name, download=download)  # type: ignore[attr-defined]
    else:
        file = resolve_checkpoint(path)
    cls_name = _classifier_name(model)
    if cls_name:
        w = read_state_dict(file).get(f"{cls_name}.weight")
        if w is not None and w.ndim == 2 and w.shape[0] != model.num_classes:  # type: ignore[attr-defined]
            model.reset_classifier(int(w.shape[0]))  # type: ignore[operator]
    convention = load_checkpoint(model, file)
    if convention.name != "reslab":  # a foreign file: say what was recognized or assumed (one line)
        print(f"--init-from {file}: {convention.note}", file=sys.stderr)


def _classifier_name(model: nn.Module) -> str | None:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    for name, mod in model.named_modules():
        if mod is head:
            return name
    return None


def _freeze(model: nn.Module, cfg: TrainConfig) -> list[nn.Module]:
    """Freeze the named parts (``stem``, ``layer1``...) or the whole backbone; returns the frozen modules
    (kept in eval mode: their BN statistics are frozen too)."""
    names = [n.strip() for n in cfg.freeze if n.strip()]
    if not names and not cfg.freeze_backbone:
        return []
    stem = tuple(getattr(model, "stem_names", ()))
    stages = tuple(getattr(model, "stage_names", ()))
    modules: list[nn.Module] = []
    if cfg.freeze_backbone:
        head = model.get_classifier()  # type: ignore[operator]
        head_params = {id(p) for p in head.parameters()}
        for p in model.parameters():
            if id(p) not in head_params:
                p.requires_grad_(False)
        modules = [m for m in model.children() if m is not head]
        return modules
    valid = ("stem", *stem, *stages)
    for n in names:
        if n == "stem":
            targets = list(stem)
        elif n in valid:
            targets = [n]
        else:
            raise ConfigError(f"--freeze: unknown part {n!r}; choose from {', '.join(valid)}")
        for t in targets:
            mod = model.get_submodule(t)
            for p in mod.parameters():
                p.requires_grad_(False)
            modules.append(mod)
    return modules


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    head_ids = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            if not p.requires_grad:
                continue
            no_decay = cfg.no_decay_bn_bias and (p.ndim <= 1)
            is_head = id(p) in head_ids
            groups.setdefault((is_head, no_decay), []).append(p)
    out = []
    for (is_head, no_decay), params in groups.items():
        scale = 1.0 if is_head else cfg.backbone_lr_scale
        out.append(
            {"params": params, "lr_scale": scale, "weight_decay": 0.0 if no_decay else cfg.weight_decay}
        )
    if not out:
        raise ConfigError("nothing to train: every parameter is frozen")
    return out


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (the paper's: momentum, L2 weight decay folded into the gradient) or AdamW, with the kernels
    ``cfg.optimizer_impl`` names: ``fused`` (one kernel for all parameters), ``foreach`` (a few
    multi-tensor kernels) or ``loop`` (one small kernel per parameter tensor). All three apply the same
    update; ``auto`` takes ``fused`` when every parameter is on a CUDA device (a step of a CIFAR ResNet
    is otherwise hundreds of tiny launches) and torch's own default elsewhere."""
    groups = _param_groups(model, cfg)
    impl = cfg.optimizer_impl
    if impl == "auto":
        on_cuda = all(p.is_cuda for g in groups for p in g["params"])
        impl = "fused" if on_cuda else "default"
    kernels: dict[str, Any] = {
        "fused": {"fused": True},
        "foreach": {"foreach": True},
        "loop": {"foreach": False},
        "default": {},
    }[impl]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **kernels)
    return torch.optim.SGD(
        groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay, **kernels,
    )  # fmt: skip


def _wrap_model(model: nn.Module, cfg: TrainConfig, dist: Dist) -> nn.Module:
    """The one place that wraps the model for the forward pass: DistributedDataParallel (gradients
    averaged over the ranks, so the update is that of the global batch; BN buffers broadcast from rank 0
    each forward), then ``torch.compile`` (``cfg.compile``: ``true``/``default``, or a mode such as
    ``reduce-overhead``, which replays the forward and backward as CUDA graphs, or
    ``max-autotune-no-cudagraphs``)."""
    fmodel = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        dev = next(model.parameters()).device
        fmodel = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile is not False:
        mode = None if cfg.compile in (True, "default") else cfg.compile
        fmodel = torch.compile(fmodel, mode=mode)  # type: ignore[assignment]
    return fmodel


class EMA:
    """Exponential moving average of the weights and float buffers (BN statistics), updated every step
    with decay ``min(decay, (1 + step) / (10 + step))`` so short runs are not dominated by the init."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._src = [t for t in model.state_dict().values() if t.is_floating_point()]
        self._dst = [t for t in self.module.state_dict().values() if t.is_floating_point()]
        self._src_int = [t for t in model.state_dict().values() if not t.is_floating_point()]
        self._dst_int = [t for t in self.module.state_dict().values() if not t.is_floating_point()]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        torch._foreach_lerp_(self._dst, self._src, 1.0 - d)
        for a, b in zip(self._dst_int, self._src_int):
            a.copy_(b)


class _NonFiniteGuard:
    """Detects a NaN/inf loss within one step without stalling the GPU pipeline."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._flag = torch.zeros((), dtype=torch.bool, pin_memory=self.cuda)
        self._event: Any = None
        self._step = -1

    def check(self, loss: torch.Tensor, step: int) -> int | None:
        """Record ``loss`` of ``step``; return the step whose loss was not finite, if any."""
        if not self.cuda:  # CPU: the value is already computed, reading it is free
            return None if math.isfinite(float(loss.detach())) else step
        bad = self.flush()
        self._flag.copy_(~torch.isfinite(loss.detach()), non_blocking=True)
        self._event = torch.cuda.Event()
        self._event.record()
        self._step = step
        return bad

    def flush(self) -> int | None:
        if self._event is None:
            return None
        self._event.synchronize()
        self._event = None
        return self._step if bool(self._flag) else None


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and stops at the end of the step. A second signal
    interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


# ------------------------------------------------------------------------------------ run directory


class _Run:
    """The run directory: checks before starting, the lock, and every file written (rank 0 only)."""

    def __init__(self, out: Path, dist: Dist) -> None:
        self.dir = out
        self.main = dist.is_main
        self.lock = ckpt.RunLock(out) if self.main else None
        self.tb: Any = None

    @staticmethod
    def status(out: Path) -> str:
        """``missing``/``empty``, ``foreign`` (files but not a run), ``unfinished`` or ``finished``."""
        if not out.exists():
            return "missing"
        if not out.is_dir():
            return "foreign"
        names = {p.name for p in out.iterdir() if not _is_tmp(p.name)} - {"train.lock"}
        if not names:
            return "empty"
        if (out / "summary.json").exists():
            try:
                import json

                if json.loads((out / "summary.json").read_text()).get("finished"):
                    return "finished"
            except (OSError, ValueError):
                pass
        if (out / "config.yaml").exists():
            return "unfinished"
        return "foreign"

    def wipe(self) -> None:
        for p in self.dir.iterdir():
            if p.name == "train.lock":
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    def write_config(self, cfg: TrainConfig) -> None:
        if self.main:
            write_text(self.dir / "config.yaml", config_to_yaml(cfg))

    def truncate_logs(self, step: int) -> None:
        """On resume: drop log rows after the checkpoint (they will be recomputed identically)."""
        if not self.main:
            return
        for name, cols in (("metrics.csv", METRICS_COLUMNS), ("train_log.csv", LOG_COLUMNS)):
            path = self.dir / name
            if not path.exists():
                continue
            keep = []
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        if int(float(row["step"])) <= step and all(row.get(c) is not None for c in cols):
                            keep.append(row)
                    except (KeyError, TypeError, ValueError):
                        continue
            import io

            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            w.writerows({c: r[c] for c in cols} for r in keep)
            write_text(path, buf.getvalue())

    def append(self, name: str, cols: tuple[str, ...], row: dict[str, Any]) -> None:
        if not self.main:
            return
        path = self.dir / name
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            if new:
                w.writerow(cols)
            w.writerow([_fmt(row.get(c)) for c in cols])

    def open_tensorboard(self, enabled: bool) -> None:
        if not (self.main and enabled):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed
            return
        self.tb = SummaryWriter(log_dir=str(self.dir / "tensorboard"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.tb is not None:
            for k, v in values.items():
                if v is not None and v == v:
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _is_tmp(name: str) -> bool:
    """A temporary file of :func:`reslab._io.atomic_write` left by a process killed mid-write."""
    return name.startswith(".") and name.endswith(".tmp")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return ""
        return f"{v:.6g}"
    return str(v)


# ------------------------------------------------------------------------------------------- train


def train(
    cfg: TrainConfig | None,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` into the run directory ``out_dir``; returns the summary (also ``summary.json``).

    ``resume=True`` continues the run in ``out_dir`` from its last checkpoint with the config stored
    there (``cfg`` may be ``None``; if given, it must agree with the stored one except for machine
    settings); a run directory without a checkpoint yet starts from scratch. A finished run returns its
    summary. ``overwrite=True`` replaces whatever run is in ``out_dir``. Without either, a directory that
    already holds a run is refused (nothing is touched). ``progress=False``: no output, except the one
    line that says a resume fell back from a damaged checkpoint (or adopted an older reslab's).
    """
    if out_dir is None:
        if cfg is None:
            raise ConfigError("train() needs a config or a run directory")
        out_dir = default_run_dir(cfg)
    out = Path(out_dir)
    status = _Run.status(out)
    if status == "foreign":
        raise ReslabError(f"{out} exists and is not a reslab run directory; choose another --out")
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if status in ("finished", "unfinished") and not (resume or overwrite):
        what = "a finished run" if status == "finished" else "an unfinished run (continue it with --resume)"
        raise ReslabError(f"{out} already holds {what}; use --resume or --overwrite, or choose another --out")
    if resume and status in ("finished", "unfinished"):
        stored = TrainConfig.from_dict(
            read_yaml(out / "config.yaml", "run config"), source=f"{out}/config.yaml"
        )
        if cfg is not None:
            _check_same_config(stored, cfg, out)  # differs at most in machine settings and lr
        cfg = stored if cfg is None else cfg
    if cfg is None:
        raise ConfigError(f"nothing to resume in {out} and no config given")
    cfg = copy.deepcopy(cfg).validate()
    dist = init_distributed(cfg)  # one process unless started by torchrun (WORLD_SIZE > 1)
    progress = progress and dist.is_main

    run = _Run(out, dist)
    created = not out.exists()
    if run.lock is not None:
        run.lock.acquire()
    try:
        status = _Run.status(out)  # again, now that we hold the lock
        if status == "finished" and resume:
            import json

            summary = json.loads((out / "summary.json").read_text())
            if progress:
                print(
                    f"{out}: already finished (step {summary.get('final', {}).get('step')})", file=sys.stderr
                )
            return summary
        if overwrite and status not in ("missing", "empty") and run.main:
            run.wipe()
        for d in (out, out / ckpt.CKPT_DIR) if run.main else ():  # litter of writes killed mid-way
            for p in d.glob(".*.tmp") if d.is_dir() else ():
                with contextlib.suppress(OSError):
                    p.unlink()
        dist.barrier()  # the other ranks start once rank 0 holds the lock and has cleaned the directory
        try:
            with _backend_flags(cfg):
                return _train(cfg, run, dist, progress=progress)
        except OSError as e:  # a full disk, a quota, a read-only file system: a user error, no traceback
            if e.errno not in _DISK_ERRNOS:
                raise
            raise ReslabError(
                f"cannot write into {out}: {e.strerror}; the last checkpoint is kept ({_resume_point(out)}); "
                f"make room, then continue with: reslab train --resume {out}"
            ) from None
        except RuntimeError as e:  # a collective failed: another rank died or hangs (torchrun ends the job)
            if not (dist.enabled and _is_peer_failure(e)):
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise ReslabError(
                f"rank {dist.rank}: lost the other ranks ({first}); the last checkpoint is kept "
                f"({_resume_point(out)}); continue with: torchrun ... reslab train --resume {out}"
            ) from None
    finally:
        run.close()
        if run.lock is not None:
            run.lock.release()
            if created and _Run.status(out) == "empty":  # failed before writing anything: leave no litter
                with contextlib.suppress(OSError):
                    run.lock.path.unlink()
                    out.rmdir()
        if sys.exc_info()[0] is None:  # after a failure the process exits; a dead peer could hang a destroy
            dist.close()


@contextlib.contextmanager
def _backend_flags(cfg: TrainConfig) -> Iterator[None]:
    """cuDNN autotuning (``cfg.cudnn_benchmark``; ``auto``: on for CUDA runs unless ``deterministic``):
    the shapes of a run never change, so timing each convolution's algorithms once pays for itself
    within a few steps. The process-wide flag is restored afterwards."""
    want = cfg.cudnn_benchmark
    if want == "auto":
        want = resolve_device(cfg.device).type == "cuda" and not cfg.deterministic
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = bool(want)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def _is_peer_failure(e: BaseException) -> bool:
    """Whether ``e`` is a collective that failed because a peer died, closed its connection or timed out."""
    dist_error = getattr(torch.distributed, "DistError", ())
    text = str(e).lower()
    return isinstance(e, dist_error) or any(
        w in text for w in ("gloo", "nccl", "connection reset", "connection closed", "timed out")
    )


_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG}


def _resume_point(out: Path) -> str:
    return ckpt.resume_point(out)


def _check_same_config(stored: TrainConfig, given: TrainConfig, out: Path) -> None:
    a, b = stored.to_dict(), given.to_dict()
    diff = [k for k in a if k not in RESUME_KEYS and a[k] != b[k]]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"--resume {out}: the run's config has {k}={a[k]!r}, the given one {b[k]!r} "
            f"({len(diff)} field(s) differ); a resumed run keeps its own config"
        )


@dataclass
class _Data:
    loader: Any  # DeviceLoader or FolderLoader: len(), batches(), state_dict(), load_state_dict()
    evals: dict[str, Any]  # split -> (model -> top-1 error in percent)
    info: dict[str, Any]  # stored in the checkpoints' config: input size, mean, std, classes...
    num_classes: int
    in_chans: int

    def describe(self) -> str:
        i = self.info
        val = f", {i['num_val']} val" if i.get("num_val") else ""
        if isinstance(i.get("val_split"), float):  # a fraction: say what it came to for this data
            val += f" (val_split {i['val_split']:g} of {i['num_train'] + i['num_val']})"
        return f"{i['dataset']} ({i['num_train']} train{val}, {i['num_test']} test)"


def _make_data(
    cfg: TrainConfig, device: torch.device, dist: Dist, cl: bool, amp_dtype: torch.dtype | None
) -> _Data:
    """The training loader and the evaluation functions; the test set is never used for selection."""
    import functools as ft

    from reslab.train.evaluate import evaluate_batches

    bs = cfg.batch_size // dist.world_size  # per rank: cfg.batch_size is the global batch
    ebs = cfg.eval_batch_size or (1024 if device.type == "cuda" else 256)  # CPU: cache-sized batches
    if cfg.dataset == "imagefolder":
        import itertools

        from reslab.data import IMAGENET_MEAN, IMAGENET_STD, make_imagefolder_loaders
        from reslab.train.folder import FolderLoader

        if not cfg.data_dir:
            raise ConfigError(
                "imagefolder needs --data-dir ROOT (with ROOT/train/<class>/ and ROOT/val/<class>/)"
            )
        loaders = make_imagefolder_loaders(
            cfg.data_dir,
            bs,
            cfg.workers,
            cfg.image_size,
            seed=cfg.seed,
            distributed=dist.enabled,
            val_batch_size=ebs,
            rank=dist.rank,
            world_size=dist.world_size,
        )  # fmt: skip  (val/ is sharded without duplicates; training uses FolderLoader's own shard)
        nc = cfg.num_classes or len(loaders.classes)
        loader = FolderLoader(
            loaders.train.dataset, bs, device=device, workers=cfg.workers, seed=cfg.seed,
            channels_last=cl, shard=(dist.rank, dist.world_size),
        )  # fmt: skip
        n_batches = None if cfg.eval_subset is None else -(-cfg.eval_subset // (ebs * dist.world_size))

        def folder_eval(model: nn.Module) -> float:
            batches = itertools.islice(loaders.val, n_batches)
            r = evaluate_batches(
                model, batches, device=device, amp_dtype=amp_dtype, num_classes=nc, channels_last=cl
            )
            return _reduced_error(r, dist, device)

        info = {
            "dataset": "imagefolder",
            "input_size": [3, cfg.image_size, cfg.image_size],
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "classes": list(loaders.classes) if nc == len(loaders.classes) else [str(i) for i in range(nc)],
            "num_classes": nc,
            "flip": True,
            "num_train": len(loaders.train.dataset),
            "num_val": 0,
            "num_test": len(loaders.val.dataset),
        }
        # The folder's val/ is the reported (test) set, as in the paper; selection uses training error.
        return _Data(loader, {"test": folder_eval} if cfg.eval_test else {}, info, nc, 3)

    from reslab.data import DeviceLoader, split_validation, subset_dataset

    ds = _load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
    if cfg.subset:
        ds = subset_dataset(ds, cfg.subset, seed=cfg.seed, stratified=True)
    if cfg.val_split:
        n = len(ds.train_y)
        if isinstance(cfg.val_split, int) and cfg.val_split >= n:
            raise ConfigError(
                f"val_split={cfg.val_split} does not fit the {n} training images; hold out fewer, "
                "or give a fraction (e.g. --val-split 0.1)"
            )
        ds = split_validation(ds, cfg.val_split, seed=cfg.seed)
    nc = cfg.num_classes or ds.num_classes
    if int(ds.train_y.max()) >= nc:
        raise ConfigError(f"num_classes={nc} but the data has labels up to {int(ds.train_y.max())}")
    info = {
        "dataset": ds.name,
        "input_size": list(ds.input_size),
        "mean": list(ds.mean),
        "std": list(ds.std),
        "classes": list(ds.classes) if nc == ds.num_classes else [str(i) for i in range(nc)],
        "num_classes": nc,
        "flip": ds.flip,
        "num_train": len(ds.train_y),
        "num_val": 0 if ds.val_y is None else len(ds.val_y),
        "num_test": len(ds.test_y),
        "val_split": cfg.val_split,
    }
    loader = DeviceLoader(
        ds.train_x, ds.train_y, bs, device=device, mean=ds.mean, std=ds.std,
        augment=cfg.augment, flip=ds.flip, pad=cfg.pad, cutout=cfg.cutout, seed=cfg.seed, drop_last=True,
        shard=(dist.rank, dist.world_size), channels_last=cl,
    )  # fmt: skip
    sets = {"val": (ds.val_x, ds.val_y), "test": (ds.test_x, ds.test_y) if cfg.eval_test else (None, None)}
    evals = {}
    for split, (x, y) in sets.items():
        if x is None:
            continue
        x, y = x[: cfg.eval_subset], y[: cfg.eval_subset]
        if dist.enabled:  # this rank's contiguous part: every sample counted once, no padding
            x, y = (
                torch.tensor_split(x, dist.world_size)[dist.rank],
                torch.tensor_split(y, dist.world_size)[dist.rank],
            )
        x, y = x.to(device), y.to(device)  # on the device once
        run = ft.partial(
            evaluate, x=x, y=y, mean=ds.mean, std=ds.std, batch_size=ebs, device=device,
            amp_dtype=amp_dtype, channels_last=cl, num_classes=nc,
        )  # fmt: skip
        evals[split] = lambda model, run=run: _reduced_error(run(model), dist, device)
    return _Data(loader, evals, info, nc, ds.in_chans)


def _reduced_error(r: dict[str, Any], dist: Dist, device: torch.device) -> float:
    """Top-1 error (percent) over all ranks from each rank's :func:`evaluate` result on its shard."""
    n, wrong = int(r["n"]), round(r["top1_error"] * r["n"] / 100.0)  # the integer count back
    if dist.enabled:
        t = torch.tensor([n, wrong], dtype=torch.float64, device=device)  # nccl: a device tensor
        torch.distributed.all_reduce(t)
        n, wrong = (int(v) for v in t.tolist())
    return 100.0 * wrong / max(n, 1)


def _loader_state(loader: Any, dist: Dist) -> dict[str, Any]:
    """The loader position in world-independent terms: ``epoch`` and ``samples`` (global samples of the
    epoch already consumed), beside the loader's own (per-rank) fields."""
    s = dict(loader.state_dict())
    s["samples"] = int(s["position"]) * loader.batch_size * dist.world_size
    return s


def _load_loader_state(loader: Any, state: dict[str, Any], dist: Dist) -> None:
    """Restore a position saved by :func:`_loader_state` with any world size of the same global batch:
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


def _train(cfg: TrainConfig, run: _Run, dist: Dist, *, progress: bool) -> dict[str, Any]:
    t_session = time.perf_counter()
    device = resolve_device(cfg.device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)  # one GPU per rank (torchrun's LOCAL_RANK)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    _check_model_config(cfg)

    # ---- data
    cl = cfg.channels_last if cfg.channels_last != "auto" else True
    amp_dtype = resolve_amp(cfg.amp, device)
    warning = slow_bf16_warning(amp_dtype, device)
    if warning and dist.is_main and progress:
        print(warning, file=sys.stderr, flush=True)
    data = _make_data(cfg, device, dist, cl, amp_dtype)
    num_classes, data_info = data.num_classes, data.info

    # ---- model, optimizer, loader
    torch.manual_seed(cfg.seed)
    import random

    import numpy as np

    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    checkpoints = ckpt.Checkpointer(run.dir, main=run.main)
    state = checkpoints.load_resume_state()  # None: a fresh run; verified, else the previous generation
    if checkpoints.note and run.main:
        print(f"reslab: note: {checkpoints.note}", file=sys.stderr, flush=True)
    model = _build_model(cfg, num_classes, data.in_chans, init=state is None)
    frozen = _freeze(model, cfg)
    model = model.to(device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and dist.enabled:  # in place: the same parameters, the same state-dict keys
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = _make_optimizer(model, cfg)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    fmodel = _wrap_model(model, cfg, dist)
    loader = data.loader
    steps_per_epoch = len(loader)
    total = cfg.iterations if cfg.iterations is not None else math.ceil(cfg.epochs * steps_per_epoch)  # type: ignore[operator]
    depth = _model_depth(cfg.model, cfg.model_kwargs)
    sched = Schedule.from_config(cfg, total, steps_per_epoch, depth)
    eval_every = steps_per_epoch if cfg.eval_every is None else (cfg.eval_every or total)
    params = sum(p.numel() for p in model.parameters())
    resolved = cfg.to_dict() | {"data": data_info, "precision": precision_name(amp_dtype)}
    meta = {  # what eval/predict/export need to rebuild the preprocessing (save_weights JSON-encodes)
        "config": resolved,
        "dataset": data_info["dataset"],
        "input_size": data_info["input_size"],
        "mean": data_info["mean"],
        "std": data_info["std"],
        "classes": data_info["classes"],
    }

    # ---- state (fresh or resumed)
    step = 0
    best: dict[str, Any] = {"metric": None, "value": math.inf, "step": -1}
    elapsed_before = 0.0
    win_log = [0.0, 0.0, 0]  # loss sum, error count, images (host, since the last train_log row)
    win_eval = [0.0, 0.0, 0, 0.0]  # ... + training seconds since the last evaluation
    history_final: dict[str, Any] = {}
    if state is not None:
        _check_state_model(state, model, run.dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.module.load_state_dict(state["ema"])
        _load_loader_state(loader, state["loader"], dist)
        ckpt.set_rng_state(state["rng"])  # rank 0's state on every rank (see docs/distributed.md)
        step = int(state["step"])
        best = dict(state["best"])
        elapsed_before = float(state["elapsed"])
        win_log = list(state["win_log"])
        win_eval = list(state["win_eval"])
        history_final = dict(state.get("final", {}))
        run.truncate_logs(step)
        checkpoints.repair_best(state)
    else:
        for name in ("metrics.csv", "train_log.csv"):
            if run.main and (run.dir / name).exists():
                (run.dir / name).unlink()
    run.write_config(cfg)
    run.open_tensorboard(cfg.tensorboard)

    # ---- output
    tty = progress and sys.stdout.isatty()
    bar = None
    if tty and dist.is_main:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, unit="it", dynamic_ncols=True, leave=True)
    say = (
        (lambda s: bar.write(s) if bar is not None else print(s, flush=True))
        if progress
        else (lambda s: None)
    )
    if step == 0 and progress:
        say(
            f"training {cfg.model} ({params / 1e6:.2f}M params) on {data.describe()} on {device}: "
            f"{total} iterations ({total / steps_per_epoch:.2f} epochs of {steps_per_epoch}), batch {cfg.batch_size}"
            + (f" ({dist.world_size} ranks x {loader.batch_size})" if dist.enabled else "")
        )
    elif progress:
        say(f"resuming {run.dir} at step {step}/{total}")
    plain_every = max(cfg.log_every, (total // 20) // cfg.log_every * cfg.log_every)

    acc = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, error count (device side)
    acc_n = 0
    guard = _NonFiniteGuard(device)
    crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    scales = [g["lr_scale"] for g in optimizer.param_groups]

    def set_train_mode() -> None:
        model.train()
        for m in frozen:
            m.eval()

    def sync_windows() -> None:
        """Move the device sums to the host windows; summed over the ranks (every rank calls it at the
        same steps)."""
        nonlocal acc_n
        if acc_n:
            if dist.enabled:
                both = torch.cat([acc, acc.new_tensor([acc_n])])
                torch.distributed.all_reduce(both)
                loss_sum, err, n = both.tolist()
                acc_n = int(n)
            else:
                loss_sum, err = acc.tolist()
            acc.zero_()
            win_log[0] += loss_sum
            win_log[1] += err
            win_log[2] += acc_n
            win_eval[0] += loss_sum
            win_eval[1] += err
            win_eval[2] += acc_n
            acc_n = 0

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_session

    def diverged(bad_step: int) -> TrainingDiverged:
        last = ckpt.weights_path(run.dir, "last")
        where = (
            f"last good checkpoint: {last} (step {_ckpt_step(run.dir)})"
            if last.exists()
            else "no checkpoint yet"
        )
        how = (
            f"continue from it with a lower learning rate: reslab train --resume {run.dir} --lr LR"
            if last.exists()
            else "lower --lr or add warm-up and start again with --overwrite"
        )
        return TrainingDiverged(
            f"loss is not finite at step {bad_step} (lr {sched(bad_step):.4g}); training stopped; {where}; {how}"
        )

    def save(names: list[str]) -> None:
        sync_windows()  # a collective: before the rank-0-only part
        if not run.main:
            return
        bad = guard.flush()
        if bad is not None:
            raise diverged(bad)
        state = {
            "format": "reslab-train-state",
            "version": 1,
            "model_name": cfg.model,
            "step": step,
            "epoch": step / steps_per_epoch,
            "model": model.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "loader": _loader_state(loader, dist),
            "rng": ckpt.rng_state(),
            "best": best,
            "elapsed": elapsed(),
            "win_log": win_log,
            "win_eval": win_eval,
            "final": history_final,
        }
        checkpoints.save(names, ema.module if ema is not None else model, meta, state)

    set_train_mode()
    batches = loader.batches()
    t_window = time.perf_counter()
    last_row: dict[str, Any] = {}
    with _StopRequest() as stop:
        while step < total:
            lr = sched(step)
            for g, s in zip(optimizer.param_groups, scales):
                g["lr"] = lr * s
            x, y = next(batches)
            with autocast_ctx(device, amp_dtype):
                out = fmodel(x)
                loss = crit(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if _fault("step", step, dist):  # test hook (RESLAB_FAULT): a kill mid-step, or a NaN loss
                loss = loss * float("nan")
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update(step)
            with torch.no_grad():
                acc[0] += loss.detach() * len(y)  # a sum over samples: the same for any world size
                acc[1] += (out.argmax(1) != y).sum()
            acc_n += len(y)
            bad = guard.check(loss, step)
            if bad is not None:
                raise diverged(bad)
            step += 1
            epoch = step / steps_per_epoch

            if step % cfg.log_every == 0 or step == total:
                sync_windows()
                row = {
                    "step": step, "epoch": round(epoch, 4), "lr": lr,
                    "loss": _mean_loss(win_log, cfg),
                    "error": 100.0 * win_log[1] / max(win_log[2], 1),
                }  # fmt: skip
                run.append("train_log.csv", LOG_COLUMNS, row)
                run.scalars(step, {"train/loss": row["loss"], "train/error": row["error"], "lr": lr})
                win_log[:] = [0.0, 0.0, 0]
                if bar is not None:
                    dt = time.perf_counter() - t_window + win_eval[3]
                    ips = win_eval[2] / dt if dt > 0 else 0.0
                    bar.set_postfix_str(
                        f"loss {row['loss']:.3f} err {row['error']:.1f}% lr {lr:.3g} {ips:.0f} img/s"
                    )
                    bar.update(step - bar.n)
                elif progress and (step % plain_every == 0) and step % eval_every != 0 and step != total:
                    dt = time.perf_counter() - t_window + win_eval[3]
                    ips = win_eval[2] / dt if dt > 0 else 0.0
                    eta = (total - step) * cfg.batch_size / max(ips, 1e-9)
                    say(
                        f"step {step}/{total} epoch {epoch:.2f} loss {row['loss']:.4f} err {row['error']:.2f}% "
                        f"lr {lr:.4g} {ips:.0f} img/s eta {_hms(eta)}"
                    )

            is_eval = step % eval_every == 0 or step == total
            if is_eval:
                sync_windows()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                win_eval[3] += time.perf_counter() - t_window
                emodel = ema.module if ema is not None else model
                sync_buffers(emodel, dist)  # every rank evaluates the same model (rank 0's statistics)
                errs = {}
                for split, run_eval in data.evals.items():
                    errs[split] = run_eval(emodel)
                    _fault("eval", step, dist)  # test hook (RESLAB_FAULT): a kill during evaluation
                set_train_mode()
                train_loss = _mean_loss(win_eval, cfg)
                train_err = 100.0 * win_eval[1] / max(win_eval[2], 1)
                row = {
                    "step": step, "epoch": round(epoch, 4), "lr": lr, "train_loss": train_loss,
                    "train_error": train_err, "val_error": errs.get("val"), "test_error": errs.get("test"),
                    "images_per_s": win_eval[2] / win_eval[3] if win_eval[3] > 0 else None,
                    "elapsed": round(elapsed(), 3),
                }  # fmt: skip
                run.append("metrics.csv", METRICS_COLUMNS, row)
                run.scalars(
                    step,
                    {f"{k}/error": v for k, v in errs.items()}
                    | {"train/images_per_s": row["images_per_s"] or 0},
                )
                win_eval[:] = [0.0, 0.0, 0, 0.0]
                # model selection: validation error if there is a validation set, else training error
                metric, value = ("val_error", errs["val"]) if "val" in errs else ("train_error", train_err)
                improved = value <= best["value"]
                if improved:
                    best = {"metric": metric, "value": value, "step": step, "test_error": errs.get("test")}
                history_final = row
                save(["last", "best"] if improved else ["last"])
                if progress:
                    parts = [f"step {step}/{total}", f"epoch {epoch:.2f}", f"train err {train_err:.2f}%"]
                    parts += [f"{k} err {v:.2f}%" for k, v in errs.items()]
                    if row["images_per_s"]:
                        parts.append(f"{row['images_per_s']:.0f} img/s")
                    parts.append(f"elapsed {_hms(row['elapsed'])}")
                    say("  ".join(parts))
                last_row = row
                t_window = time.perf_counter()
            elif step % cfg.checkpoint_every == 0:
                t0 = time.perf_counter()
                win_eval[3] += t0 - t_window
                save(["last"])
                t_window = time.perf_counter()

            if dist.any(stop.signum is not None) and step < total:  # every rank stops at one step
                win_eval[3] += time.perf_counter() - t_window
                save(["last"])
                if bar is not None:
                    bar.close()
                name = signal.Signals(stop.signum or signal.SIGTERM).name
                if run.main:
                    print(
                        f"{name}: stopped at step {step}/{total}; checkpoint saved; continue with: "
                        f"{'torchrun ... -m ' if dist.enabled else ''}reslab train --resume {run.dir}",
                        file=sys.stderr,
                    )
                raise KeyboardInterrupt
    if bar is not None:
        bar.close()
    sync_buffers(model, dist)
    if ema is not None:
        sync_buffers(ema.module, dist)
    assert_replicas_in_sync(model, dist)
    if ema is not None:
        assert_replicas_in_sync(ema.module, dist)

    # ---- summary
    summary = {
        "finished": True,
        "run_dir": str(run.dir),
        "model": cfg.model,
        "dataset": data_info["dataset"],
        "recipe": cfg.recipe,
        "params": params,
        "steps": total,
        "epochs": round(total / steps_per_epoch, 4),
        "batch_size": cfg.batch_size,
        "world_size": dist.world_size,
        "final": {k: last_row.get(k, history_final.get(k)) for k in METRICS_COLUMNS},
        "best": best,
        "selection": "val_error" if "val" in data.evals else "train_error (no validation split)",
        "test_accuracy": (100.0 - last_row["test_error"]) if last_row.get("test_error") is not None else None,
        "wall_time_s": round(elapsed(), 3),
        "device": _device_name(device),
        "precision": precision_name(amp_dtype),
        "threads": torch.get_num_threads(),
        "versions": _versions(),
        "git_revision": _git_revision(),
        "checkpoints": {
            "last": str(ckpt.weights_path(run.dir, "last")),
            "best": str(ckpt.weights_path(run.dir, "best")),
        },
        "curves": str(run.dir / "curves.png"),
    }
    if run.main:
        from reslab.train.plots import plot_curves

        plot_curves(run.dir, title=f"{cfg.model} on {data_info['dataset']} ({cfg.recipe})")
        write_json(run.dir / "summary.json", summary)
    return summary


def _mean_loss(win: list, cfg: TrainConfig) -> float:
    # win[0] sums per-sample losses (batch mean x batch size, over all ranks); win[2] counts images
    return win[0] / win[2] if win[2] else float("nan")


def _hms(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _ckpt_step(run_dir: Path) -> int | str:
    try:
        return int(ckpt.read_weights_metadata(ckpt.weights_path(run_dir, "last")).get("step", "?"))
    except (ReslabError, ValueError):
        return "?"


def _check_state_model(state: dict[str, Any], model: nn.Module, run_dir: Path) -> None:
    name = getattr(model, "model_name", None)
    if state.get("model_name") not in (None, name):
        raise CheckpointError(
            f"{run_dir}: the checkpoint is of model {state.get('model_name')!r}, this run builds {name!r}"
        )
    own = model.state_dict()
    for k, v in state["model"].items():
        if k not in own or own[k].shape != v.shape:
            raise CheckpointError(f"{run_dir}: checkpoint tensor {k!r} does not fit model {name!r}")
