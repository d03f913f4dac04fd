"""The run directory: what a run writes and where, the rules for starting into one, and the resume
rule's check.

``<run>/``: ``config.yaml``, ``metrics.csv`` (:func:`metrics_columns` of the task's metrics;
classification's are :data:`METRICS_COLUMNS`), ``train_log.csv``
(:data:`LOG_COLUMNS`), ``summary.json``, ``curves.png``, ``tensorboard/``, ``checkpoints/`` (see
:mod:`reslab.train.checkpoint`) and ``train.lock``. Only rank 0 writes. A directory is ``missing``,
``empty``, ``foreign`` (files, but not a run), ``unfinished`` or ``finished`` (:meth:`RunDir.status`);
:func:`check_target` decides from that whether ``train(..., resume=, overwrite=)`` may start.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reslab._io import write_text
from reslab.errors import ConfigError, ReslabError
from reslab.train import checkpoint as ckpt
from reslab.train.config import RESUME_KEYS, TrainConfig
from reslab.train.distributed import Dist
from reslab.train.recipe import config_to_yaml, read_yaml

EVAL_SPLITS = ("val", "test")  # the metrics.csv columns of each split, in this order
LOG_COLUMNS = ("step", "epoch", "lr", "loss", "error")


def metrics_columns(metric_names: tuple[str, ...]) -> tuple[str, ...]:
    """The ``metrics.csv`` header of a task whose evaluation returns ``metric_names``: ``split_metric`` for
    each split (val, then test) and metric, between the training columns and the throughput."""
    per_split = tuple(f"{split}_{m}" for split in EVAL_SPLITS for m in metric_names)
    return ("step", "epoch", "lr", "train_loss", "train_error", *per_split, "images_per_s", "elapsed")


METRICS_COLUMNS = metrics_columns(("error",))  # classification (errors in percent)

# Write errors that are the machine's, not a bug: a full disk, a quota, a read-only file system.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG})


def default_run_dir(cfg: TrainConfig, root: str | os.PathLike = "runs") -> Path:
    """``runs/<model>-<dataset>-<time>`` (other tasks: ``runs/<task>-<model>-<time>``), as one plain folder
    name (a model/dataset name such as ``../x`` or ``/tmp/x`` cannot leave ``root``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    what = f"{cfg.model}-{cfg.dataset}" if cfg.task == "classification" else f"{cfg.task}-{cfg.model}"
    name = re.sub(r"[^A-Za-z0-9._+=-]", "_", f"{what}-{stamp}").lstrip(".")
    return Path(root) / name


def check_target(cfg: TrainConfig | None, out: Path, *, resume: bool, overwrite: bool) -> TrainConfig:
    """The config to train into ``out``, after the checks that touch nothing: ``--resume`` and
    ``--overwrite`` exclude each other; a directory holding a run needs one of them; a resumed run keeps
    its stored config (a given one may differ only in :data:`~reslab.train.config.RESUME_KEYS`)."""
    status = RunDir.status(out)
    if status == "foreign":
        raise ReslabError(f"{out} exists and is not a reslab run directory; choose another --out")
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if status in ("finished", "unfinished") and not (resume or overwrite):
        what = "a finished run" if status == "finished" else "an unfinished run (continue it with --resume)"
        raise ReslabError(f"{out} already holds {what}; use --resume or --overwrite, or choose another --out")
    if resume and status in ("finished", "unfinished"):
        stored = stored_config(out)
        if cfg is not None:
            check_resume_config(stored, cfg, out)
        cfg = stored if cfg is None else cfg
    if cfg is None:
        raise ConfigError(f"nothing to resume in {out} and no config given")
    return cfg


def stored_config(out: Path) -> TrainConfig:
    """The config a run directory was started with (``config.yaml``)."""
    return TrainConfig.from_dict(read_yaml(out / "config.yaml", "run config"), source=f"{out}/config.yaml")


def check_resume_config(stored: TrainConfig, given: TrainConfig, out: Path) -> None:
    """A resumed run keeps its own config: ``given`` may differ from ``stored`` only in
    :data:`~reslab.train.config.RESUME_KEYS`."""
    a, b = stored.to_dict(), given.to_dict()
    diff = [k for k in a if k not in RESUME_KEYS and a[k] != b[k]]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"--resume {out}: the run's config has {k}={a[k]!r}, the given one {b[k]!r} "
            f"({len(diff)} field(s) differ); a resumed run keeps its own config"
        )


class RunDir:
    """The run directory: checks before starting, the lock, and every file written (rank 0 only)."""

    def __init__(self, out: Path, dist: Dist, metrics_cols: tuple[str, ...] = METRICS_COLUMNS) -> None:
        self.dir = out
        self.main = dist.is_main
        self.lock = ckpt.RunLock(out) if self.main else None
        self.tb: Any = None
        self.metrics_cols = metrics_cols  # the run's metrics.csv header (its task's metrics)

    @contextlib.contextmanager
    def session(self) -> Iterator[RunDir]:
        """Hold the run's lock (rank 0) for the whole run. On the way out: TensorBoard closed, the lock
        released, and a directory this call created but never wrote into removed (no litter)."""
        created = not self.dir.exists()
        if self.lock is not None:
            self.lock.acquire()
        try:
            yield self
        finally:
            self.close()
            if self.lock is not None:
                self.lock.release()
                if created and RunDir.status(self.dir) == "empty":
                    with contextlib.suppress(OSError):
                        self.lock.path.unlink()
                        self.dir.rmdir()

    def prepare(self, *, overwrite: bool) -> None:
        """Under the lock: wipe the old run (``overwrite``) and the temporary files of writes killed
        mid-way (rank 0)."""
        if not self.main:
            return
        if overwrite and RunDir.status(self.dir) not in ("missing", "empty"):
            self.wipe()
        for d in (self.dir, self.dir / ckpt.CKPT_DIR):
            for p in d.glob(".*.tmp") if d.is_dir() else ():
                with contextlib.suppress(OSError):
                    p.unlink()

    def summary(self) -> dict[str, Any]:
        """The ``summary.json`` of a finished run."""
        return json.loads((self.dir / "summary.json").read_text())

    def start_logs(self, step: int | None) -> None:
        """A fresh run (``step`` None) removes old log files; a resumed one drops the rows after its
        checkpoint (they will be recomputed identically)."""
        if not self.main:
            return
        if step is not None:
            self.truncate_logs(step)
            return
        for name in ("metrics.csv", "train_log.csv"):
            if (self.dir / name).exists():
                (self.dir / name).unlink()

    @staticmethod
    def status(out: Path) -> str:
        """``missing``/``empty``, ``foreign`` (files but not a run), ``unfinished`` or ``finished``."""
        if not out.exists():
            return "missing"
        if not out.is_dir():
            return "foreign"
        names = {p.name for p in out.iterdir() if not is_temporary(p.name)} - {"train.lock"}
        if not names:
            return "empty"
        if (out / "summary.json").exists():
            try:
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
        """On resume: drop log rows after the checkpoint (they will be recomputed identically), and torn
        rows; the files are rewritten with the run's own headers (:attr:`metrics_cols`)."""
        if not self.main:
            return
        for name, cols in (("metrics.csv", self.metrics_cols), ("train_log.csv", LOG_COLUMNS)):
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
            w.writerow([format_cell(row.get(c)) for c in cols])

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


def is_temporary(name: str) -> bool:
    """A temporary file of :func:`reslab._io.atomic_write` left by a process killed mid-write."""
    return name.startswith(".") and name.endswith(".tmp")


def format_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return ""
        return f"{v:.6g}"
    return str(v)
