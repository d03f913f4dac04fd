"""Plan and run an experiment: a set of ordinary training runs under one folder, then its figure and report.

Layout of an experiment folder::

    experiment.json     the plan (networks, configs, budget) and one entry per invocation (wall time, device)
    runs/<run>/         ordinary run directories of ``reslab.train`` (config.yaml, metrics.csv, summary.json...)
    logs/<run>.log      output of runs trained in a worker process (``jobs > 1``)
    results.csv         one row per run: final training/test error
    <name>.png          the figure, redrawn from the runs' CSV logs
    report.md           what was run, the figure, the table beside the paper's numbers, the claims

A rerun skips finished runs (``summary.json`` present), continues interrupted ones (``resume=True``) and
only then redraws the figure and rewrites the report. With ``publish=DEST`` (``--publish``) it also skips
runs that the committed results in ``DEST`` hold finished with the same config, and copies every run
that finishes into ``DEST`` (:mod:`reslab.experiments.publishing`); the report in ``DEST`` then covers the
whole sweep, the one in the experiment folder only the runs trained there. With ``jobs > 1`` runs train concurrently in worker
processes (``python -m reslab.experiments.worker``), deepest first; on CUDA the default is several per
GPU so small models keep the device busy.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reslab import _io
from reslab.errors import INTERRUPTED_EXIT, ConfigError, DataError, ReslabError
from reslab.experiments.plan import Plan, check_experiment_folder, config_mismatch, read_sessions, write_plan
from reslab.experiments.publishing import adopt_partial, partial_step, published_run
from reslab.experiments.publishing import publish as publish_folder
from reslab.experiments.report import write_outputs
from reslab.experiments.reuse import adopt_run, identical_run
from reslab.experiments.specs import RunSpec
from reslab.train.rundir import RunDir

# ------------------------------------------------------------------------------------------ status


NOT_STARTED = ("missing", "empty")  # RunDir.status of a run no invocation has started


def run_states(plan: Plan, publish: str | os.PathLike | None = None) -> dict[str, str]:
    """Each run's state for this invocation: its run directory's :meth:`RunDir.status` (the one
    vocabulary of a run's state), or ``published`` when the committed results in ``publish`` hold it
    finished with the same config (it will be skipped)."""
    states = {r.name: RunDir.status(plan.run_dir(r)) for r in plan.runs}
    if publish is not None:
        for r in plan.runs:
            if states[r.name] != "finished" and published_run(plan, r, publish):
                states[r.name] = "published"
    return states


def _reuse_roots(plan: Plan, publish: str | os.PathLike | None) -> list[Path]:
    """Where :func:`identical_run` looks: the siblings of ``out`` and of ``publish``."""
    return [plan.out.parent] + ([Path(publish).parent] if publish is not None else [])


def reusable_runs(
    plan: Plan, states: dict[str, str], publish: str | os.PathLike | None = None
) -> dict[str, Path]:
    """The runs not done here that another experiment finished with the same training config
    (:mod:`reslab.experiments.reuse`): run name -> that run's folder."""
    roots = _reuse_roots(plan, publish)
    found = {
        r.name: identical_run(plan, r, roots)
        for r in plan.runs
        if states[r.name] in (*NOT_STARTED, "unfinished")
    }
    return {name: path for name, path in found.items() if path is not None}


def planned_states(
    plan: Plan, publish: str | os.PathLike | None = None, only: Collection[str] | None = None
) -> dict[str, str]:
    """What :func:`run_experiment` would do with each run, in words (``--dry-run``), deciding as
    :func:`_select_runs` does but copying nothing: its :func:`run_states` state, or where it would be
    reused from, or the published step it would continue from; and whether ``only`` leaves it out."""
    states = run_states(plan, publish)
    reusable = reusable_runs(plan, states, publish)
    for r in plan.runs:
        if r.name in reusable:
            states[r.name] = f"reuse: {reusable[r.name]}"
        elif publish is not None and states[r.name] in (*NOT_STARTED, "unfinished"):
            step = partial_step(plan, r, publish)
            if step is not None:
                states[r.name] = f"continue from the published step {step}"
        if states[r.name] in NOT_STARTED:
            states[r.name] = "new"
        if only is not None and r.name not in only and states[r.name] not in ("finished", "published"):
            states[r.name] += " (left out by --runs)"
    return states


def _check_compatible(plan: Plan, run: RunSpec) -> None:
    """A run directory left by an earlier invocation must be a run, made with the same config."""
    if RunDir.status(plan.run_dir(run)) == "foreign":
        raise ReslabError(f"{plan.run_dir(run)} is not a reslab run directory; move it away")
    path = plan.run_dir(run) / "config.yaml"
    if not path.is_file():
        return
    import yaml

    try:
        stored = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return
    bad = config_mismatch(stored, plan.configs[run.name]) if isinstance(stored, dict) else None
    if bad is not None:
        key, have, want = bad
        raise ConfigError(
            f"{plan.run_dir(run)} was trained with {key}={have!r}, this invocation asks for {want!r}; "
            f"use another --out or delete that run directory"
        )


# --------------------------------------------------------------------------------------- execution


def resolve_jobs(jobs: int | None, device: str, n_pending: int) -> tuple[int, list[str | None]]:
    """How many runs train at once, and the device of each worker slot (None: the config's own).

    Default: 1 on CPU; on CUDA 4 per GPU (CIFAR-sized ResNets leave most of an H100 idle), at most one per
    two CPU cores and never more than the runs left.
    """
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    n_gpu = torch.cuda.device_count() if cuda else 0
    if jobs is None or jobs <= 0:
        jobs = max(1, min(4 * max(n_gpu, 1), (os.cpu_count() or 2) // 2)) if cuda else 1
    jobs = max(1, min(jobs, max(n_pending, 1)))
    if cuda and n_gpu > 1 and device in ("auto", "cuda"):
        slots: list[str | None] = [f"cuda:{i % n_gpu}" for i in range(jobs)]
    else:
        slots = [None] * jobs
    return jobs, slots


def _train_in_process(plan: Plan, run: RunSpec, progress: bool) -> None:
    from reslab.train import load_recipe, train

    cfg = load_recipe(plan.recipe, **plan.configs[run.name])
    # resume=True: a missing run starts fresh, an unfinished one continues from its last checkpoint.
    train(cfg, plan.run_dir(run), resume=True, progress=progress)


def _cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo's "model name"), else platform's guess."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _command_line() -> str:
    """This invocation as typed: ``reslab reproduce ...`` (not the interpreter's path to ``__main__.py``)."""
    if not sys.argv or not sys.argv[0]:
        return ""
    head = Path(sys.argv[0])
    prog = "reslab" if head.name in ("reslab", "__main__.py") else str(head)
    return " ".join([prog, *sys.argv[1:]])


# glibc hands an allocation above its mmap threshold (at most 32 MB) back to the kernel when it is freed,
# so a network whose activations exceed it (DenseNet-BC-100's concatenations: up to 87 MB at batch 128)
# faults those pages in anew on every step. Keeping freed memory in the heap made DenseNet-BC-100's CPU
# step 1.22x faster and left the ResNets' unchanged, for 3% more peak memory (bench/step_cost.py,
# BENCHMARKS.md). A worker is a training process, which holds its peak memory anyway. Other C libraries
# ignore these variables; values the user set win.
_WORKER_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**36)}


def _worker_env(threads: int) -> dict[str, str]:
    """A worker's environment: this process's, ``threads`` OpenMP threads, glibc keeping freed memory."""
    return {**_WORKER_MALLOC_ENV, **os.environ, "OMP_NUM_THREADS": str(threads)}


def _worker_command(request: Path) -> list[str]:
    return [sys.executable, "-m", "reslab.experiments.worker", str(request)]


@dataclass
class _SessionRecord:
    """This invocation's entry in ``experiment.json``: written as ``running`` when it starts, with its
    wall time, the runs it trained, reused and lost, and how it ended when it stops."""

    plan: Plan
    earlier: list[dict[str, Any]]
    entry: dict[str, Any]
    started: float

    @classmethod
    def start(cls, plan: Plan) -> _SessionRecord:
        earlier = read_sessions(plan.out)
        started = time.time()
        entry: dict[str, Any] = {
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": _command_line(),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "device": plan.device,
        }
        write_plan(plan, [*earlier, {**entry, "status": "running"}])
        return cls(plan, earlier, entry, started)

    def progress(self, sweep: _Sweep) -> None:
        """Record the wall time so far and the runs finished so far (status still ``running``), so that
        an invocation killed later (SIGKILL, a machine taken away) leaves what it did on record."""
        self.entry.update(wall_s=round(time.time() - self.started, 2), trained=list(sweep.finished))
        write_plan(self.plan, [*self.earlier, {**self.entry, "status": "running"}])

    def finish(self, sweep: _Sweep, status: str) -> float:
        """Write the entry with ``status`` (``finished`` or ``interrupted``); returns the wall time. An
        interrupted invocation lists as trained only the runs it finished, not the one it stopped."""
        wall = time.time() - self.started
        self.entry.update(wall_s=round(wall, 2), trained=list(sweep.finished), status=status)
        if sweep.reused:
            self.entry["reused"] = sweep.reused
        if sweep.failed:
            self.entry["failed"] = sweep.failed
        write_plan(self.plan, [*self.earlier, self.entry])
        return wall


@dataclass
class _Sweep:
    """What this invocation does with each run of the plan: skip it (done here or published), take it
    from another experiment (reused), or train it (pending; resumed if it was started); and the runs
    that failed."""

    plan: Plan
    publish: str | os.PathLike | None
    log: Callable[[str], None]
    statuses: dict[str, str]
    pending: list[RunSpec]
    skipped: list[str]
    from_published: list[str]
    resumed: list[str] = field(default_factory=list)
    reused: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)  # trained to the end by this invocation
    left_out: list[str] = field(default_factory=list)  # unfinished, not among the runs asked for
    record: _SessionRecord | None = None

    def on_done(self, run: RunSpec) -> None:
        """Record a run the moment it finishes and publish it (with the report so far): a sweep killed
        later still leaves a complete, committable folder. A failure to publish is logged, not fatal."""
        if run.name not in self.reused:
            self.finished.append(run.name)
        if self.record is not None:
            self.record.progress(self)
        if self.publish is None:
            return
        try:
            publish_folder(self.plan.out, self.publish)
        except Exception as e:  # the final publish in run_experiment raises it if it persists
            self.log(
                f"publishing {run.name} to {self.publish} failed ({type(e).__name__}: {e}); retried at the end"
            )

    def reuse(self, run: RunSpec) -> bool:
        """Take ``run`` from another experiment that finished the same training (:mod:`.reuse`)."""
        source = identical_run(self.plan, run, _reuse_roots(self.plan, self.publish))
        if source is None:
            return False
        adopt_run(source, self.plan.run_dir(run))
        self.reused[run.name] = str(source)
        self.log(f"reusing {run.name}: the same training finished in {source}")
        self.on_done(run)
        return True

    def summary(self, n_jobs: int) -> str:
        """The line that says what this invocation is about to do."""
        return (
            f"{self.plan.experiment}: {len(self.plan.runs)} runs in {self.plan.out} — {len(self.skipped)} finished"
            + (
                f" ({len(self.from_published)} of them published in {self.publish})"
                if self.from_published
                else ""
            )
            + ", "
            f"{len(self.resumed)} to continue, {len(self.pending) - len(self.resumed)} to train"
            + (f", {len(self.left_out)} left for another invocation" if self.left_out else "")
            + (f", {n_jobs} at a time" if n_jobs > 1 and self.pending else "")
        )

    def result(self, wall: float) -> dict[str, Any]:
        return {
            "trained": list(self.finished),
            "reused": self.reused,
            "resumed": self.resumed,
            "skipped": self.skipped,
            "published": self.from_published,
            "failed": self.failed,
            "left_out": self.left_out,
            "wall_s": wall,
            "out": self.plan.out,
        }


def _select_runs(
    plan: Plan,
    publish: str | os.PathLike | None,
    log: Callable[[str], None],
    only: Collection[str] | None = None,
) -> _Sweep:
    """Sort the plan's runs into skipped, reused and pending; the pending ones deepest first. A pending
    run published unfinished (its checkpoint committed when an earlier sweep stopped) is copied here,
    unless this folder holds it further along, so that it continues rather than restarts. With ``only``,
    the unfinished runs not named there are left out (neither trained nor continued)."""
    statuses = run_states(plan, publish)
    from_published = [r.name for r in plan.runs if statuses[r.name] == "published"]
    sweep = _Sweep(
        plan,
        publish,
        log,
        statuses,
        pending=[r for r in plan.runs if statuses[r.name] != "finished" and r.name not in from_published],
        skipped=[r.name for r in plan.runs if statuses[r.name] == "finished" or r.name in from_published],
        from_published=from_published,
    )
    sweep.pending = [r for r in sweep.pending if not sweep.reuse(r)]
    sweep.skipped += list(sweep.reused)
    if only is not None:
        sweep.left_out = [r.name for r in sweep.pending if r.name not in only]
        sweep.pending = [r for r in sweep.pending if r.name in only]
    for run in sweep.pending if publish is not None else []:
        step = adopt_partial(plan, run, publish)
        if step is not None:
            log(f"{run.name}: continuing from the checkpoint published in {publish} (step {step})")
            statuses[run.name] = "unfinished"
    sweep.resumed = [r.name for r in sweep.pending if statuses[r.name] == "unfinished"]
    # Deepest (slowest) first: the sweep ends sooner when runs train concurrently.
    sweep.pending.sort(key=lambda r: (-r.depth, plan.runs.index(r)))
    return sweep


def _train_sequentially(sweep: _Sweep, progress: bool) -> None:
    """Train the pending runs one after the other in this process; a failed run is noted in
    ``sweep.failed`` and the next one starts."""
    pending = sweep.pending
    for i, run in enumerate(pending, 1):
        if sweep.reuse(run):  # another sweep finished the same training meanwhile
            continue
        verb = "continuing" if sweep.statuses[run.name] == "unfinished" else "training"
        sweep.log(f"[{i}/{len(pending)}] {verb} {run.name}")
        try:
            _train_in_process(sweep.plan, run, progress)
            sweep.on_done(run)
        except (ConfigError, DataError):
            raise  # the same for every run (bad value, missing data): stop now
        except ReslabError as e:  # e.g. a diverged run: keep going, report it at the end
            sweep.failed.append(run.name)
            sweep.log(f"[{i}/{len(pending)}] {run.name} FAILED: {e}")


def check_run_names(plan: Plan, names: Collection[str] | None) -> None:
    """Every name in ``names`` must be one of the plan's runs (one line otherwise)."""
    have = [r.name for r in plan.runs]
    unknown = [name for name in names or () if name not in have]
    if unknown:
        raise ConfigError(f"{plan.experiment} has no run {unknown[0]!r}; its runs: {', '.join(have)}")


def run_experiment(
    plan: Plan,
    *,
    jobs: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    report: bool = True,
    publish: str | os.PathLike | None = None,
    only: Collection[str] | None = None,
) -> dict[str, Any]:
    """Train what is not finished, then write results.csv, the figure and report.md.

    ``only``: train just these runs (names of ``plan.runs``), e.g. the ones that fit in a sitting; the
    others stay as they are and the report covers every finished run.

    ``publish``: a folder of committed results (:mod:`reslab.experiments.publishing`). A run it holds
    finished with the same config is skipped; each run that finishes here is copied there at once, and
    the report and figures are written there too at the end.

    A run another experiment finished with the same training config (a sibling of ``out`` or of
    ``publish``) is copied instead of trained again (:mod:`reslab.experiments.reuse`).

    Returns ``{"trained": [...], "skipped": [...], "resumed": [...], "published": [...], "reused": {run:
    source}, "wall_s": float, "out": Path}``.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    check_run_names(plan, only)
    out = plan.out
    check_experiment_folder(out, "--out")
    if publish is not None:
        check_experiment_folder(publish, "--publish")
    out.mkdir(parents=True, exist_ok=True)
    for run in plan.runs:
        _check_compatible(plan, run)
    record = _SessionRecord.start(plan)
    sweep = _select_runs(plan, publish, log, only)
    sweep.record = record
    n_jobs, slots = resolve_jobs(jobs, plan.device, len(sweep.pending))
    record.entry["jobs"] = n_jobs
    log(sweep.summary(n_jobs))
    status = "interrupted"
    try:
        if n_jobs <= 1:
            _train_sequentially(sweep, progress)
        else:
            sweep.failed = _train_concurrently(plan, sweep.pending, sweep.statuses, slots, log, sweep.on_done)
        status = "finished"
    finally:
        wall = record.finish(sweep, status)
        if status == "interrupted" and publish is not None:
            _publish_on_stop(out, publish, log)
    result = sweep.result(wall)
    if report:
        result.update(write_outputs(out))
        if publish is not None:
            result.update(publish_folder(out, publish))
    if sweep.failed:
        where = "" if n_jobs <= 1 else f" (see {out / 'logs'}/<run>.log)"
        raise ReslabError(
            f"{len(sweep.failed)} run(s) failed: {', '.join(sweep.failed)}{where}; the report shows the "
            "others; rerun to retry them"
        )
    return result


def _publish_on_stop(out: Path, publish: str | os.PathLike, log: Callable[[str], None]) -> None:
    """On an interrupted sweep, publish what it has, unfinished runs with their newest checkpoint, so a
    rerun from ``publish`` continues them; a failure here is logged and must not hide the interruption."""
    try:
        publish_folder(out, publish)
        log(f"published the finished runs and the unfinished runs' last checkpoints to {publish}")
    except Exception as e:
        log(f"publishing to {publish} on stopping failed ({type(e).__name__}: {e}); rerun to publish")


def _train_concurrently(
    plan: Plan,
    pending: list[RunSpec],
    statuses: dict[str, str],
    slots: list[str | None],
    log: Callable[[str], None],
    on_done: Callable[[RunSpec], None],
) -> list[str]:
    """Run ``pending`` in worker processes, ``len(slots)`` at a time; returns the names that failed."""
    (plan.out / "logs").mkdir(parents=True, exist_ok=True)
    req_dir = plan.out / "logs"
    n = len(slots)
    # Share the CPU cores between the workers (on CUDA they only feed the GPU; on CPU they do the work).
    threads = max(1, (os.cpu_count() or 2) // n)
    queue = list(pending)
    running: dict[int, tuple[subprocess.Popen, RunSpec, Any]] = {}
    failed: list[str] = []
    done = 0
    restore = _sigterm_raises_interrupt()
    try:
        while queue or running:
            while queue and len(running) < n:
                slot = next(i for i in range(n) if i not in running)
                run = queue.pop(0)
                cfg = dict(plan.configs[run.name])
                if slots[slot] is not None:
                    cfg["device"] = slots[slot]
                if "threads" not in plan.extra:
                    cfg["threads"] = threads
                request = req_dir / f"{run.name}.request.json"
                _io.write_json(
                    request,
                    {
                        "recipe": plan.recipe,
                        "config": cfg,
                        "out_dir": str(plan.run_dir(run)),
                    },
                )
                fh = open(req_dir / f"{run.name}.log", "ab")  # noqa: SIM115 - closed when the run ends
                env = _worker_env(cfg.get("threads") or threads)
                proc = subprocess.Popen(
                    _worker_command(request), stdout=fh, stderr=subprocess.STDOUT, env=env
                )
                running[slot] = (proc, run, fh)
                verb = "continuing" if statuses[run.name] == "unfinished" else "training"
                log(f"  {verb} {run.name} (worker {slot}{', ' + slots[slot] if slots[slot] else ''})")
            time.sleep(0.2)
            for slot in list(running):
                proc, run, fh = running[slot]
                rc = proc.poll()
                if rc is None:
                    continue
                fh.close()
                del running[slot]
                done += 1
                if rc != 0:
                    failed.append(run.name)
                    why = (
                        "stopped by a signal at its last checkpoint"
                        if rc == INTERRUPTED_EXIT
                        else f"FAILED (exit {rc}); see logs/{run.name}.log"
                    )
                    log(f"[{done}/{len(pending)}] {run.name} {why}")
                else:
                    log(f"[{done}/{len(pending)}] {run.name} finished")
                    on_done(run)
    except BaseException:
        # Interrupted: stop the workers (each run keeps its last checkpoint; a rerun continues it).
        for proc, _run, _fh in running.values():
            with contextlib.suppress(OSError):
                proc.terminate()
        for proc, _run, fh in running.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=30)
            fh.close()
        raise
    finally:
        restore()
    return failed


def _sigterm_raises_interrupt() -> Callable[[], None]:
    """While workers train, SIGTERM to this process raises KeyboardInterrupt (as Ctrl-C does), so the
    workers are stopped at a checkpoint and the invocation is recorded as interrupted; without it the
    default action would end this process at once and leave the workers training, unpublished. Returns
    the function that puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)
