"""The training loop: ``train(cfg, out_dir) -> summary``.

:func:`train_loop` is the table of contents: set up, restore, then ``while step < total:`` learning rate
-> step -> meters -> guard -> log -> evaluate and checkpoint -> stop on a signal, then the summary.
Everything else is a small named piece it calls: :mod:`~reslab.train.setup` (model, optimizer,
wrappers, flags), :mod:`~reslab.train.task` (the data, the loss, the metrics, model selection: the seam a
new task plugs into), :mod:`~reslab.train.meters`, :mod:`~reslab.train.guards`,
:mod:`~reslab.train.progress`, :mod:`~reslab.train.rundir`, :mod:`~reslab.train.checkpoint`,
:mod:`~reslab.train.distributed`.

What it implements of He et al. 2016: mini-batch SGD with momentum and weight decay on the
cross-entropy loss (Sec. 3.4 for ImageNet, Sec. 4.2 for CIFAR: batch 128, lr 0.1 divided by 10 at 32k
and 48k iterations, 64k iterations, 4-pixel padding + random crop + flip, a 45k/5k train/val split for
model selection; the ``cifar_paper`` recipe). Deviations, each a config choice: inputs are normalized
per channel (mean/std of the training set) where the paper subtracts the per-pixel mean; BN, ReLU and
initialization are the models' business (:mod:`reslab.models`); the ``fashion_mnist*`` recipes use a
one-cycle schedule, label smoothing and Nesterov momentum, which the paper does not.

Invariants: ``model`` is the raw module whose weights are saved, ``fmodel`` the wrapped one that runs
(DDP, ``torch.compile``); only rank 0 writes files; the step reads no value back from the GPU (the
meters sync every ``log_every`` steps, the guard reads a one-step-old flag on CUDA).
"""

from __future__ import annotations

import copy
import os
import signal
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab._device import autocast_ctx
from reslab._io import write_json
from reslab.config import TrainConfig
from reslab.errors import ConfigError, ReslabError, first_line, out_of_memory
from reslab.precision import precision_name, precision_reason
from reslab.provenance import device_name, git_revision, versions
from reslab.tasks import run_label, summary_extras, task_class
from reslab.tasks.base import Dist
from reslab.train import checkpoint as ckpt
from reslab.train.distributed import (
    assert_replicas_in_sync,
    fault,
    init_distributed,
    is_peer_failure,
    loader_state,
    sync_buffers,
)
from reslab.train.guards import NonFiniteGuard, StopRequest, TrainingDiverged
from reslab.train.progress import Progress
from reslab.train.rundir import (
    DISK_ERRNOS,
    LOG_COLUMNS,
    METRICS_COLUMNS,
    RunDir,
    check_accepted,
    check_target,
    default_run_dir,
)
from reslab.train.session import Session, make_task, restore, set_up
from reslab.train.setup import (
    backend_flags,
)

__all__ = ["LOG_COLUMNS", "METRICS_COLUMNS", "TrainingDiverged", "default_run_dir", "make_task", "train"]


def train(
    cfg: TrainConfig | None,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    accept_changes: Collection[str] = (),
) -> dict[str, Any]:
    """Train ``cfg`` into the run directory ``out_dir``; returns the summary (also ``summary.json``).

    ``resume=True`` continues the run in ``out_dir`` from its last checkpoint with the config stored
    there (``cfg`` may be ``None``; if given, it must agree with the stored one except for
    :data:`~reslab.config.RESUME_KEYS`); a run directory without a checkpoint yet starts from
    scratch. A finished run returns its summary. ``config.yaml`` must agree with the config the
    checkpoint was trained with, except for the keys of ``accept_changes`` (a deliberate change, e.g. more
    ``iterations``: :data:`~reslab.train.rundir.CHANGEABLE_ON_RESUME`; recorded in the run's history).
    ``overwrite=True`` replaces the run in ``out_dir`` (only its own files: a directory holding anything
    else is refused). Without either, a directory that already holds a run is refused (nothing is touched).
    ``progress=False``: no output, except the one line that says a resume fell back from a damaged
    checkpoint (or adopted an older reslab's).
    """
    if out_dir is None:
        if cfg is None:
            raise ConfigError("train() needs a config or a run directory")
        out_dir = default_run_dir(cfg)
    out = Path(out_dir)
    check_accepted(accept_changes)
    checked = check_target(cfg, out, resume=resume, overwrite=overwrite, accept=accept_changes)
    cfg = copy.deepcopy(checked).validate()
    # an unknown task: one line, before any folder is touched; a task that owns its loop (stable-baselines3's
    # algorithms) drives the run itself in the same run directory (:meth:`reslab.tasks.base.Task.drive`)
    drive = getattr(task_class(cfg.task), "drive", None)
    dist = init_distributed(cfg)  # one process unless started by torchrun (WORLD_SIZE > 1)
    report = Progress(progress, main=dist.is_main)
    run = RunDir(out, dist)
    with run.session():
        # a finished run is done, unless it is resumed to change its length (``accept_changes``)
        if resume and RunDir.status(out) == "finished" and not accept_changes:  # again, under the lock
            summary = run.summary()
            report.warn(f"{out}: already finished (step {summary.get('final', {}).get('step')})")
        else:
            run.prepare(overwrite=overwrite)
            dist.barrier()  # the other ranks start once rank 0 holds the lock and has cleaned up
            with _user_errors(out, dist, cfg), backend_flags(cfg):
                if drive is not None:
                    summary = drive(cfg, run, report, resume=resume)
                else:
                    summary = train_loop(cfg, run, dist, report, accept_changes=accept_changes)
    dist.close()  # only after success: after a failure the process exits, and a dead peer could hang it
    return summary


def train_loop(
    cfg: TrainConfig, run: RunDir, dist: Dist, report: Progress, *, accept_changes: Collection[str] = ()
) -> dict[str, Any]:
    """Set up, restore, train to ``total`` steps (evaluating and checkpointing on the way), summarize."""
    s, state = set_up(cfg, run, dist, report)
    restore(s, state, accept_changes)
    run.write_config(cfg, note=f"precision: {precision_reason(cfg.amp, s.rt.device, s.rt.amp_dtype)}")
    report.warn(run.open_tensorboard(cfg.tensorboard))
    report.start(total=s.total, step=s.step, eval_every=s.eval_every, log_every=cfg.log_every,
                 header=_header(s) if s.step == 0 else f"resuming {run.dir} at step {s.step}/{s.total}")  # fmt: skip
    guard = NonFiniteGuard(s.rt.device)
    s.train_mode()
    batches = s.task.loader.batches()
    s.meters.resume()
    with StopRequest() as stop:
        while s.step < s.total:
            lr = s.set_lr()
            loss, errors, n = train_step(s, next(batches))
            s.meters.add(loss, errors, n)
            bad = guard.check(loss, s.step)
            if bad is not None:
                raise _diverged(s, bad)
            s.step += 1
            step = s.step

            if step % cfg.log_every == 0 or step == s.total:
                log_training(s, lr, report)
            if step % s.eval_every == 0 or step == s.total:
                evaluate_and_save(s, lr, guard, report)
            elif step % cfg.checkpoint_every == 0:
                s.meters.pause()
                save(s, guard, ["last"])
                s.meters.resume()

            if dist.any(stop.signum is not None) and step < s.total:  # every rank stops at one step
                s.meters.pause()
                save(s, guard, ["last"])
                name = signal.Signals(stop.signum or signal.SIGTERM).name
                report.stopped(
                    f"{name}: stopped at step {step}/{s.total}; checkpoint saved; continue with: "
                    f"{'torchrun ... -m ' if dist.enabled else ''}reslab train --resume {run.dir}"
                )
                raise KeyboardInterrupt
    report.close()
    return finish(s)


def log_training(s: Session, lr: float, report: Progress) -> None:
    """A ``train_log.csv`` row: the training loss (and error) since the last row, synced over the ranks."""
    s.meters.sync(s.rt.dist)
    w, step = s.meters.log, s.step
    epoch = step / s.steps_per_epoch
    row = {"step": step, "epoch": round(epoch, 4), "lr": lr, "loss": w.mean_loss,
           "error": w.error if s.task.counts_errors else None}  # fmt: skip
    s.run.append("train_log.csv", LOG_COLUMNS, row)
    s.run.scalars(step, {"train/loss": row["loss"], "train/error": row["error"], "lr": lr})
    w.reset()
    report.log_row(step, epoch, row, s.meters.images_per_s(), s.cfg.batch_size)


def evaluate_and_save(s: Session, lr: float, guard: NonFiniteGuard, report: Progress) -> None:
    """An evaluation: the task's metrics on every split as a ``metrics.csv`` row, the model selection
    (:meth:`reslab.tasks.base.Task.select`), and the checkpoint (``best`` too when it improved)."""
    s.meters.sync(s.rt.dist)
    if s.rt.device.type == "cuda":
        torch.cuda.synchronize(s.rt.device)
    s.meters.pause()
    metrics = run_evaluation(s)
    w, step = s.meters.eval, s.step
    epoch = step / s.steps_per_epoch
    values = {f"{split}_{m}": v for split, per in metrics.items() for m, v in per.items()}
    row = {
        "step": step, "epoch": round(epoch, 4), "lr": lr, "train_loss": w.mean_loss,
        "train_error": w.error if s.task.counts_errors else None, **values,
        "images_per_s": w.images / w.seconds if w.seconds > 0 else None, "elapsed": round(s.elapsed(), 3),
    }  # fmt: skip
    s.run.append("metrics.csv", s.columns, row)
    s.run.scalars(
        step,
        {k.replace("_", "/", 1): v for k, v in values.items()}
        | {"train/images_per_s": row["images_per_s"] or 0},
    )
    w.reset()
    metric, value = s.task.select(metrics, row["train_error"])
    improved = s.improved(value)
    if improved:
        primary = f"test_{s.task.metric_names[0]}"
        s.best = {"metric": metric, "value": value, "step": step, primary: row.get(primary)}
    s.final = {k: row.get(k) for k in s.columns}
    save(s, guard, ["last", "best"] if improved else ["last"])
    report.eval_row(step, epoch, row, metrics)
    s.meters.resume()


def train_step(s: Session, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One optimizer update on ``batch``: forward (autocast), backward, clip, step, EMA."""
    with autocast_ctx(s.rt.device, s.rt.amp_dtype):
        loss, errors, n = s.task.forward(s.fmodel, batch)
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if fault("step", s.step, s.rt.dist):  # test hook (RESLAB_FAULT): a kill mid-step, or a NaN loss
        loss = loss * float("nan")
    if s.cfg.grad_clip:
        nn.utils.clip_grad_norm_(s.model.parameters(), s.cfg.grad_clip)
    s.optimizer.step()
    if s.ema is not None:
        s.ema.update(s.step)
    return loss, errors, n


def run_evaluation(s: Session) -> dict[str, dict[str, float]]:
    """The task's metrics on every evaluation split (split -> name -> value), of the model every rank
    holds alike."""
    model = s.eval_model
    sync_buffers(model, s.rt.dist)  # every rank evaluates the same model (rank 0's statistics)
    metrics = {}
    for split in s.task.eval_splits:
        metrics[split] = s.task.evaluate(split, model)
        fault("eval", s.step, s.rt.dist)  # test hook (RESLAB_FAULT): a kill during evaluation
    s.train_mode()
    return metrics


def save(s: Session, guard: NonFiniteGuard, names: list[str]) -> None:
    """Checkpoint ``names`` (``last``, ``best``): weights + the full training state (rank 0 writes)."""
    s.meters.sync(s.rt.dist)  # a collective: before the rank-0-only part
    if not s.run.main:
        return
    bad = guard.flush()
    if bad is not None:
        raise _diverged(s, bad)
    state = {
        "format": "reslab-train-state",
        "version": 1,
        "model_name": s.cfg.model,
        "step": s.step,
        "epoch": s.step / s.steps_per_epoch,
        "model": s.model.state_dict(),
        "ema": s.ema.module.state_dict() if s.ema is not None else None,
        "optimizer": s.optimizer.state_dict(),
        "loader": loader_state(s.task.loader, s.rt.dist),
        "rng": ckpt.rng_state(),
        "best": s.best,
        "elapsed": s.elapsed(),
        **s.meters.state_dict(),
        "final": s.final,
        "config": s.meta["config"],  # what the checkpoint was trained with (checked on resume)
    }
    s.checkpoints.save(names, s.eval_model, s.meta, state)


def finish(s: Session) -> dict[str, Any]:
    """Replicas checked equal, the curves drawn, ``summary.json`` written; returns the summary."""
    cfg, run, dist = s.cfg, s.run, s.rt.dist
    for m in (s.model, s.ema.module if s.ema is not None else None):
        if m is not None:
            sync_buffers(m, dist)
            assert_replicas_in_sync(m, dist)
    last = s.final
    summary = {
        "finished": True,
        "run_dir": str(run.dir),
        "task": cfg.task,
        "metric_names": list(s.task.metric_names),
        "model": cfg.model,
        "dataset": s.task.info["dataset"],
        "recipe": cfg.recipe,
        "params": sum(p.numel() for p in s.model.parameters()),
        "steps": s.total,
        "epochs": round(s.total / s.steps_per_epoch, 4),
        "batch_size": cfg.batch_size,
        "world_size": dist.world_size,
        "final": {k: last.get(k) for k in s.columns},
        "best": s.best,
        "selection": s.task.selection,
        **summary_extras(cfg.task, last),
        "wall_time_s": round(s.elapsed(), 3),
        "device": device_name(s.rt.device),
        "precision": precision_name(s.rt.amp_dtype),
        "precision_reason": precision_reason(cfg.amp, s.rt.device, s.rt.amp_dtype),
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "git_revision": git_revision(),
        "checkpoints": {name: str(ckpt.weights_path(run.dir, name)) for name in ("last", "best")},
        "curves": str(run.dir / "curves.png"),
    }
    if run.main:
        from reslab.train.plots import plot_curves

        what = run_label(cfg.task, cfg.model, s.task.info["dataset"])
        plot_curves(run.dir, title=f"{what} ({cfg.recipe})", metric=s.task.metric_names[0])
        write_json(run.dir / "summary.json", summary)
    return summary


def _header(s: Session) -> str:
    """What a fresh run trains, in a few lines: the model and its trainable / frozen parameters, the data
    (splits and sizes), the device and the precision (and why), the budget and the schedule's shape."""
    cfg, dist = s.cfg, s.rt.dist
    params = [(p.numel(), p.requires_grad) for p in s.model.parameters()]
    total, trainable = sum(n for n, _ in params), sum(n for n, t in params if t)
    ranks = f" ({dist.world_size} ranks x {s.task.loader.batch_size})" if dist.enabled else ""
    frozen = f", {(total - trainable) / 1e6:.2f}M frozen" if trainable < total else ", none frozen"
    evaluated = f"; evaluated on the first {cfg.eval_subset} of each split" if cfg.eval_subset else ""
    return "\n".join(
        (
            f"training {cfg.model} ({total / 1e6:.2f}M params: {trainable / 1e6:.2f}M trainable{frozen})",
            f"  data:      {s.task.describe()}{evaluated}",
            f"  device:    {s.rt.device}, {precision_reason(cfg.amp, s.rt.device, s.rt.amp_dtype)}",
            f"  budget:    {s.total} iterations ({s.total / s.steps_per_epoch:.2f} epochs of {s.steps_per_epoch}), "
            f"batch {cfg.batch_size}{ranks}",
            f"  schedule:  {cfg.optimizer}, {s.schedule.describe()}",
        )
    )


def _diverged(s: Session, bad_step: int) -> TrainingDiverged:
    last = ckpt.weights_path(s.run.dir, "last")
    if last.exists():
        where = f"last good checkpoint: {last} (step {ckpt.checkpoint_step(s.run.dir)})"
        how = f"continue from it with a lower learning rate: reslab train --resume {s.run.dir} --lr LR"
    else:
        where, how = "no checkpoint yet", "lower --lr or add warm-up and start again with --overwrite"
    return TrainingDiverged(
        f"loss is not finite at step {bad_step} (lr {s.schedule(bad_step):.4g}); training stopped; {where}; {how}"
    )


@contextmanager
def _user_errors(out: Path, dist: Dist, cfg: TrainConfig) -> Iterator[None]:
    """A full disk, memory running out or a lost peer rank is the user's to fix: one line saying what is
    kept and how to continue, no traceback."""
    try:
        yield
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError (CUDA) is a RuntimeError too
        what = out_of_memory(e)
        if what is None:
            if isinstance(e, MemoryError) or not (dist.enabled and is_peer_failure(e)):
                raise
            first = first_line(e, 160)
            raise ReslabError(
                f"rank {dist.rank}: lost the other ranks ({first}); the last checkpoint is kept "
                f"({ckpt.resume_point(out)}); continue with: torchrun ... reslab train --resume {out}"
            ) from None
        half, kept = max(1, cfg.batch_size // 2), ckpt.resume_point(out)
        how = (
            f"start again with a smaller --batch-size (e.g. {half}) and --overwrite"
            if kept == "none written yet"
            else f"the last checkpoint is kept ({kept}); start again with a smaller --batch-size (e.g. {half}), "
            f"or where evaluation ran out, continue with: reslab train --resume {out} --set eval_batch_size=N"
        )
        raise ReslabError(
            f"out of memory ({what}) training with batch size {cfg.batch_size}; {how}"
        ) from None
    except OSError as e:  # a full disk, a quota, a read-only file system
        if e.errno not in DISK_ERRNOS:
            raise
        raise ReslabError(
            f"cannot write into {out}: {e.strerror}; the last checkpoint is kept ({ckpt.resume_point(out)}); "
            f"make room, then continue with: reslab train --resume {out}"
        ) from None
