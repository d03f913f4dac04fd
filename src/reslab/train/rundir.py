"""The run directory: what a run writes and where, the rules for starting into one, and the resume
rule's check.

``<run>/``: ``reslab-run.json`` (the marker: :mod:`reslab.owned`), ``config.yaml``, ``metrics.csv``
(:func:`metrics_columns` of the task's metrics; classification's are :data:`METRICS_COLUMNS`),
``train_log.csv`` (:data:`LOG_COLUMNS`), ``summary.json``, ``curves.png``, ``tensorboard/``,
``checkpoints/`` (see :mod:`reslab.train.checkpoint`) and ``train.lock``. Only rank 0 writes.

A directory is ``missing``, ``empty``, ``foreign`` (files, but not a run), ``unfinished`` or ``finished``
(:meth:`RunDir.status`). A run is recognized by its marker, never by file names a user may have; a run
an older reslab wrote (no marker) only where every entry is a name reslab writes and a file only reslab
writes vouches for it (:func:`legacy_run`). :func:`check_target` decides from that whether
``train(..., resume=, overwrite=)`` may start; ``--overwrite`` removes only what the run wrote and
refuses a directory holding anything else, naming the first foreign entry.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import shutil
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from reslab import owned
from reslab._io import truncate_log, write_text
from reslab.config import RESUME_KEYS, TrainConfig, config_difference
from reslab.errors import ConfigError, ReslabError
from reslab.tasks import run_label
from reslab.tasks.base import Dist
from reslab.train import checkpoint as ckpt
from reslab.train.lock import RunLock
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
    what = run_label(cfg.task, cfg.model, cfg.dataset)
    name = re.sub(r"[^A-Za-z0-9._+=-]", "_", f"{what}-{stamp}").lstrip(".")
    return Path(root) / name


# The top-level names a run directory holds that reslab wrote (an older reslab's run: no marker).
RUN_NAMES = (
    "config.yaml", "metrics.csv", "train_log.csv", "summary.json", "curves.png", "checkpoints", "tensorboard",
    "train.lock", "eval.json", "confusion_val.png", "confusion_test.png", "reused.json", owned.MARKERS["run"],
)  # fmt: skip
# What a new run claims in its marker from the start: the files the engine writes.
RUN_LAYOUT = RUN_NAMES[:8]


def check_target(
    cfg: TrainConfig | None, out: Path, *, resume: bool, overwrite: bool, accept: Collection[str] = ()
) -> TrainConfig:
    """The config to train into ``out``, after the checks that touch nothing: ``--resume`` and
    ``--overwrite`` exclude each other; a directory holding a run needs one of them; ``--overwrite``
    needs a run holding nothing reslab did not write; a resumed run keeps its stored config (a given one
    may differ only in :data:`~reslab.config.RESUME_KEYS`)."""
    status = RunDir.status(out)
    if status == "foreign":
        first = owned.foreign_entries(out, RUN_NAMES) if out.is_dir() else []
        what = f" (it holds {first[0]}, which reslab did not write)" if first else " (no run marker)"
        raise ReslabError(f"{out} exists and is not a reslab run directory{what}; choose another --out")
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if status in ("finished", "unfinished") and not (resume or overwrite):
        what = "a finished run" if status == "finished" else "an unfinished run (continue it with --resume)"
        raise ReslabError(f"{out} already holds {what}; use --resume or --overwrite, or choose another --out")
    if overwrite and status in ("finished", "unfinished"):
        check_overwrite(out)
    if resume and status in ("finished", "unfinished"):
        stored = stored_config(out)
        if cfg is not None:
            check_resume_config(stored, cfg, out, accept)
        cfg = stored if cfg is None else cfg
    if cfg is None:
        raise ConfigError(f"nothing to resume in {out} and no config given")
    return cfg


def own_names(out: Path) -> set[str]:
    """The top-level names of run directory ``out`` that reslab wrote: its marker's list (an older
    reslab's run, without one: those of :data:`RUN_NAMES` present)."""
    marker = owned.read_marker(out, "run")
    return set(marker["files"]) | {"train.lock"} if marker is not None else set(RUN_NAMES)


def check_overwrite(out: Path) -> None:
    """Refuse (one line, naming the first) to overwrite a run directory holding anything reslab did not
    write: ``--overwrite`` removes only the run's own files."""
    owned.refuse_foreign(
        out, owned.foreign_entries(out, own_names(out)), "cannot be overwritten",
        "move it away, or choose another --out",
    )  # fmt: skip


def legacy_run(out: Path) -> bool:
    """A run directory an older reslab wrote (before markers): every entry is a name reslab writes in a
    run, and a file only reslab writes vouches for it (a finished summary with the versions that trained
    it, or a checkpoint manifest or training state)."""
    if owned.foreign_entries(out, RUN_NAMES) or not (out / "config.yaml").is_file():
        return False
    try:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        if isinstance(summary, dict) and "finished" in summary and "versions" in summary:
            return True
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    ckdir = out / ckpt.CKPT_DIR
    return any(ckdir.glob("*.manifest.json")) or any(ckdir.glob("*.state.pt"))


def stored_config(out: Path) -> TrainConfig:
    """The config a run directory was started with (``config.yaml``)."""
    return TrainConfig.from_dict(read_yaml(out / "config.yaml", "run config"), source=f"{out}/config.yaml")


# What ``--accept-change`` may let a resumed run change deliberately: its length (the schedule is
# recomputed for the new total; the steps already taken stay as they were).
CHANGEABLE_ON_RESUME = frozenset({"iterations", "epochs"})


def check_accepted(accept: Collection[str]) -> None:
    """``accept`` names only keys a resumed run may change deliberately (:data:`CHANGEABLE_ON_RESUME`)."""
    bad = sorted(set(accept) - CHANGEABLE_ON_RESUME)
    if bad:
        raise ConfigError(
            f"--accept-change {bad[0]}: a resumed run may change only "
            f"{' or '.join(sorted(CHANGEABLE_ON_RESUME))}"
        )


def check_resumed_config(
    cfg: TrainConfig, recorded: dict[str, Any], out: Path, step: int, accept: Collection[str] = ()
) -> dict[str, list[Any]]:
    """``config.yaml`` of a resumed run against the config its checkpoint (of ``step``) was trained with:
    a difference outside :data:`~reslab.config.RESUME_KEYS` is refused in one line naming the key
    and both values, unless ``accept`` names it (only :data:`CHANGEABLE_ON_RESUME`). Returns the accepted
    changes, ``{key: [was, now]}``."""
    check_accepted(accept)
    if not recorded:  # a checkpoint that recorded no config (an early reslab's): nothing to hold against it
        return {}
    mine = json.loads(json.dumps(cfg.to_dict(), default=str))
    diff = {k: [was, now] for k, was, now in config_difference(recorded, mine, ignore=RESUME_KEYS)}
    refused = [k for k in diff if k not in accept]
    if refused:
        k, (was, now) = refused[0], diff[refused[0]]
        how = (
            f"to change it deliberately: reslab train --resume {out} --accept-change {k}"
            if k in CHANGEABLE_ON_RESUME
            else "restore config.yaml, or start a new run"
        )
        raise ConfigError(
            f"{out}/config.yaml has {k}={now!r} but its checkpoint (step {step}) was trained with {was!r}"
            f"{f' ({len(refused)} fields differ)' if len(refused) > 1 else ''}; a resumed run keeps its "
            f"config; {how}"
        )
    return diff


def check_resume_config(
    stored: TrainConfig, given: TrainConfig, out: Path, accept: Collection[str] = ()
) -> None:
    """A resumed run keeps its own config: ``given`` may differ from ``stored`` only in
    :data:`~reslab.config.RESUME_KEYS` (and the keys of ``accept``)."""
    diff = config_difference(stored.to_dict(), given.to_dict(), ignore=RESUME_KEYS | set(accept))
    if diff:
        k, have, want = diff[0]
        raise ConfigError(
            f"--resume {out}: the run's config has {k}={have!r}, the given one {want!r} "
            f"({len(diff)} field(s) differ); a resumed run keeps its own config"
        )


class RunDir:
    """The run directory: checks before starting, the lock, and every file written (rank 0 only)."""

    def __init__(self, out: Path, dist: Dist, metrics_cols: tuple[str, ...] = METRICS_COLUMNS) -> None:
        self.dir = out
        self.main = dist.is_main
        self.lock = RunLock(out) if self.main else None
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
                        owned.marker_path(self.dir, "run").unlink(missing_ok=True)
                        self.lock.path.unlink()
                        self.dir.rmdir()

    def prepare(self, *, overwrite: bool) -> None:
        """Under the lock: wipe the old run (``overwrite``: only its own files), remove the temporary
        files of its writes killed mid-way, and mark the directory as a run (rank 0): a new marker for a
        new run, an older reslab's run adopted as it is."""
        if not self.main:
            return
        status = RunDir.status(self.dir)
        if overwrite and status not in ("missing", "empty"):
            check_overwrite(self.dir)  # again, under the lock
            self.wipe()
            status = "empty"
        mine = own_names(self.dir)
        for d, names in ((self.dir, mine), (self.dir / ckpt.CKPT_DIR, None)):
            for p in d.glob(".*.tmp") if d.is_dir() else ():
                if names is None or owned.is_own_temporary(p.name, names):
                    with contextlib.suppress(OSError):
                        p.unlink()
        if owned.read_marker(self.dir, "run") is None:
            present = [n for n in RUN_NAMES if (self.dir / n).exists()] if status != "empty" else []
            owned.new_marker(self.dir, "run", [*present, *RUN_LAYOUT])

    def summary(self) -> dict[str, Any]:
        """The ``summary.json`` of a finished run."""
        return json.loads((self.dir / "summary.json").read_text())

    def start_logs(self, step: int | None) -> list[str]:
        """A fresh run (``step`` None) removes old log files; a resumed one drops the rows after its
        checkpoint (they will be recomputed identically) and damaged ones; returns what to tell the user."""
        if not self.main:
            return []
        if step is not None:
            return self.truncate_logs(step)
        for name in ("metrics.csv", "train_log.csv"):
            if (self.dir / name).exists():
                (self.dir / name).unlink()
        return []

    @staticmethod
    def status(out: Path) -> str:
        """``missing``/``empty``, ``foreign`` (files but not a run), ``unfinished`` or ``finished``.

        ``empty``: nothing but the lock, the marker and reslab's temporary files (a user's ``.draft.tmp``
        is a file). A run: a marker, or an older reslab's run (:func:`legacy_run`)."""
        if not out.exists():
            return "missing"
        if not out.is_dir():
            return "foreign"
        quiet = {"train.lock", owned.MARKERS["run"]}
        if all(p.name in quiet or owned.is_own_temporary(p.name, RUN_NAMES) for p in out.iterdir()):
            return "empty"
        if owned.read_marker(out, "run") is None and not legacy_run(out):
            return "foreign"
        try:
            if json.loads((out / "summary.json").read_text(encoding="utf-8")).get("finished"):
                return "finished"
        except (OSError, ValueError, UnicodeDecodeError, AttributeError):
            pass
        return "unfinished"

    def wipe(self) -> None:
        """Remove the run's own files (:func:`own_names`; the caller checked nothing else is there);
        the lock stays, the marker goes last."""
        marker = owned.marker_path(self.dir, "run")
        mine = own_names(self.dir)
        for p in self.dir.iterdir():
            if p.name in ("train.lock", marker.name) or not (
                p.name in mine or owned.is_own_temporary(p.name, mine)
            ):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        marker.unlink(missing_ok=True)

    def write_config(self, cfg: TrainConfig, note: str | None = None) -> None:
        """``config.yaml``: the config, and ``note`` (what ``amp`` resolved to, and why) as a comment."""
        if self.main:
            comment = f"# {note}\n" if note else ""
            write_text(self.dir / "config.yaml", config_to_yaml(cfg) + comment)

    def truncate_logs(self, step: int) -> list[str]:
        """On resume: drop log rows after the checkpoint (they will be recomputed identically), torn rows
        and damaged ones (undecodable bytes, NULs, a wrong number of fields); the files are rewritten
        with the run's own headers (:attr:`metrics_cols`). Logs are repaired, not trusted: returns one
        line per file that lost rows at or before ``step`` (those are not recomputed)."""
        notes: list[str] = []
        if not self.main:
            return notes
        for name, cols in (("metrics.csv", self.metrics_cols), ("train_log.csv", LOG_COLUMNS)):
            path = self.dir / name
            if not path.exists():
                continue
            damaged = truncate_log(path, cols, step)
            if damaged:
                notes.append(
                    f"{path}: {damaged} damaged row{'s' if damaged > 1 else ''} dropped (unreadable bytes "
                    f"or fields); the rows after step {step} are recomputed, these are not"
                )
        return notes

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

    def open_tensorboard(self, wanted: bool | str) -> str | None:
        """Log scalars to ``tensorboard/`` (``wanted``: the config's ``tensorboard``, ``True``, ``"auto"``
        or ``False``). Returns a warning where ``True`` asked for it and tensorboard is not installed
        (``"auto"`` goes without, silently)."""
        if not (self.main and wanted):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed
            if wanted is True:
                return "tensorboard=true, but tensorboard is not installed (pip install tensorboard): no tensorboard/ logs"
            return None
        self.tb = SummaryWriter(log_dir=str(self.dir / "tensorboard"))
        return None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.tb is not None:
            for k, v in values.items():
                if v is not None and v == v:
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def format_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return ""
        return f"{v:.6g}"
    return str(v)
