"""One run's set-up, for the loop (:mod:`reslab.train.engine`): the :class:`Session` (what the loop
works on: config, run directory, task, model, optimizer, schedule, meters, checkpoints, and its state:
step, best, final), built by :func:`set_up` in the order that makes a resumed run bit-identical, and
continued from a checkpoint by :func:`restore`.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from reslab import owned
from reslab._device import resolve_device
from reslab.config import TrainConfig
from reslab.errors import ConfigError, ReslabError
from reslab.manifest import Manifest
from reslab.precision import precision_name, recorded_amp, resolve_amp, slow_bf16_warning
from reslab.tasks import image_batches, task_class
from reslab.tasks.base import Dist, Runtime, Task, run_config
from reslab.train import checkpoint as ckpt
from reslab.train.distributed import load_loader_state
from reslab.train.meters import DeviceSums, Meters
from reslab.train.progress import Progress
from reslab.train.rundir import RunDir, check_resumed_config, metrics_columns
from reslab.train.schedule import Schedule, warmup_steps
from reslab.train.setup import (
    EMA,
    check_model_config,
    configure_process,
    freeze,
    make_optimizer,
    model_depth,
    seed_everything,
    wrap_model,
)


def make_task(cfg: TrainConfig, runtime: Runtime) -> Task:
    """The task ``cfg.task`` names, from the one registry :data:`reslab.tasks.TASKS`."""
    return task_class(cfg.task)(cfg, runtime)


@dataclass
class Session:
    """Everything :func:`set_up` built for one run, and the loop's state (``step``, ``best``, ``final``:
    the last metrics row, ``elapsed_before``: the wall time of earlier sessions of a resumed run)."""

    cfg: TrainConfig
    run: RunDir
    rt: Runtime
    task: Task
    model: nn.Module
    fmodel: nn.Module
    frozen: list[nn.Module]
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    schedule: Schedule
    total: int
    steps_per_epoch: int
    eval_every: int
    meta: dict[str, Any]
    meters: Meters
    checkpoints: ckpt.Checkpointer
    started: float
    step: int = 0
    best: dict[str, Any] = field(default_factory=dict)  # {"metric", "value", "step", "test_<primary>"}
    final: dict[str, Any] = field(default_factory=dict)
    elapsed_before: float = 0.0

    def __post_init__(self) -> None:
        if not self.best:  # nothing evaluated yet: the worst value in the task's direction
            worst = -math.inf if self.task.higher_is_better else math.inf
            self.best = {"metric": None, "value": worst, "step": -1}

    @property
    def columns(self) -> tuple[str, ...]:
        """The run's ``metrics.csv`` header."""
        return self.run.metrics_cols

    def improved(self, value: float) -> bool:
        """Is ``value`` at least as good as the best so far (a tie goes to the later evaluation)?"""
        return value >= self.best["value"] if self.task.higher_is_better else value <= self.best["value"]

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluated and exported: the EMA's when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def set_lr(self) -> float:
        lr = self.schedule(self.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g["lr_scale"]
        return lr

    def train_mode(self) -> None:
        self.model.train()
        for m in self.frozen:  # frozen parts keep their BN statistics
            m.eval()


def set_up(
    cfg: TrainConfig, run: RunDir, dist: Dist, report: Progress
) -> tuple[Session, dict[str, Any] | None]:
    """The device, the task's data, the model (fresh, or shaped to receive the checkpoint), the
    optimizer, EMA, wrappers and schedule, in the order that makes a resumed run bit-identical; and the
    training state to resume from (verified; ``None``: a fresh run)."""
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)  # one GPU per rank (torchrun's LOCAL_RANK)
    configure_process(cfg)
    check_model_config(cfg)  # an unknown model or a bad depth fails before the data loads
    amp_dtype = run_amp(cfg, run, device)
    report.warn(slow_bf16_warning(amp_dtype, device))
    if cfg.channels_last is True and not image_batches(cfg.task):
        raise ConfigError(f"channels_last applies to classification only, not {cfg.task}")
    channels_last = image_batches(cfg.task) and cfg.channels_last in ("auto", True)
    rt = Runtime(device, dist, channels_last, amp_dtype)
    task = make_task(cfg, rt)
    run.metrics_cols = metrics_columns(task.metric_names)
    seed_everything(cfg.seed)
    checkpoints = ckpt.Checkpointer(run.dir, main=run.main)
    state = checkpoints.load_resume_state()  # None: a fresh run; verified, else the previous generation
    tell(run, checkpoints.note)
    model = task.build_model(cfg, init=state is None)
    frozen = freeze(model, cfg)
    model = model.to(device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and dist.enabled:  # in place: the same parameters, the same state-dict keys
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(model, cfg)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    fmodel = wrap_model(model, cfg, dist)
    per_epoch = len(task.loader)
    total = cfg.iterations if cfg.iterations is not None else math.ceil(cfg.epochs * per_epoch)  # type: ignore[operator]
    depth = model_depth(cfg.model, cfg.model_kwargs)
    schedule = Schedule.from_config(cfg, total, per_epoch, depth)
    if state is None:
        report.warn(schedule.warning(warmup_steps(cfg, depth)))
    info = task.info
    meta = {  # what eval/predict/export need to rebuild the preprocessing (save_weights JSON-encodes)
        "config": cfg.to_dict() | {"data": info, "precision": precision_name(amp_dtype)},
        **{k: info[k] for k in ("dataset", "input_size", "mean", "std", "classes") if k in info},
        **getattr(task, "weights_metadata", {}),  # e.g. the dense tasks' model spec
    }
    return Session(
        cfg, run, rt, task, model, fmodel, frozen, optimizer, ema, schedule, total, per_epoch,
        eval_every=per_epoch if cfg.eval_every is None else (cfg.eval_every or total),
        meta=meta, meters=Meters(DeviceSums(device)), checkpoints=checkpoints, started=started,
    ), state  # fmt: skip


def run_amp(cfg: TrainConfig, run: RunDir, device: torch.device) -> torch.dtype | None:
    """The run's autocast dtype: ``cfg.amp`` resolved on ``device`` (:func:`reslab.precision.resolve_amp`),
    except that a resumed ``amp: auto`` run keeps the precision its last checkpoint records: ``auto``
    resolves differently on different machines (bf16 where the CPU has it natively), and a run continued
    elsewhere must not change its arithmetic half-way."""
    amp_dtype = resolve_amp(cfg.amp, device)
    last = ckpt.weights_path(run.dir, "last")
    if cfg.amp != "auto" or not last.is_file():
        return amp_dtype
    try:  # the header only, unverified and silent: the resume verifies (and reports) it later
        config, _ = run_config(ckpt.read_weights_metadata(last))
    except ReslabError:  # a damaged checkpoint: the resume falls back or fails on its own, later
        return amp_dtype
    return recorded_amp(config, device)


def restore(s: Session, state: dict[str, Any] | None, accept_changes: Collection[str] = ()) -> None:
    """Continue from a checkpoint's training state (``None``: a fresh run, old logs removed): the config
    checked against the one the checkpoint was trained with, the logs cut back to its step (damaged rows
    dropped), ``best`` verified and repaired; each repair said in one line, the resume recorded in the
    run's history."""
    if state is None:
        s.run.start_logs(None)
        return
    recorded = ckpt.recorded_config(state, s.run.dir, s.checkpoints.resumed_from or "last")
    changes = check_resumed_config(s.cfg, recorded, s.run.dir, state["step"], accept_changes)
    ckpt.check_state_fits(state, s.model, s.run.dir)
    s.model.load_state_dict(state["model"])
    s.optimizer.load_state_dict(state["optimizer"])
    if s.ema is not None and state.get("ema") is not None:
        s.ema.module.load_state_dict(state["ema"])
    load_loader_state(s.task.loader, state["loader"], s.rt.dist)
    ckpt.set_rng_state(state["rng"])  # rank 0's state on every rank (see docs/distributed.md)
    s.step = int(state["step"])
    s.best = dict(state["best"])
    s.elapsed_before = float(state["elapsed"])
    s.meters.load_state_dict(state)
    s.final = dict(state.get("final", {}))
    for line in s.run.start_logs(s.step):
        tell(s.run, line)
    repaired = s.checkpoints.repair_best(state, partial(_weights_bytes_of, s))
    tell(s.run, repaired)
    if repaired and repaired.startswith("removed"):  # no sound best left: the next evaluation is the best
        s.best = {}
        s.__post_init__()
    if s.run.main:
        event = {"event": "resume", "step": s.step, "from": s.checkpoints.resumed_from}
        owned.record(s.run.dir, "run", event | ({"changes": changes} if changes else {}))


def _weights_bytes_of(s: Session, state: dict[str, Any], m: Manifest) -> bytes:
    """The bytes a save of training state ``state`` wrote as the weights of the checkpoint ``m``
    describes (to rebuild a damaged ``best.safetensors`` from its sound ``best.state.pt``)."""
    from reslab.models.weights import weights_bytes

    model = copy.deepcopy(s.eval_model)
    model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    return weights_bytes(
        model, s.meta | {"checkpoint_id": m.checkpoint_id, "step": m.step, "run_id": m.run_id}
    )


def tell(run: RunDir, line: str | None) -> None:
    """One ``reslab: note:`` line on stderr (rank 0), shown even with ``--quiet``: what a resume repaired
    or fell back from."""
    if line and run.main:
        print(f"reslab: note: {line}", file=sys.stderr, flush=True)
