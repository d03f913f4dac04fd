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

import os
import sys
from collections.abc import Callable, Collection
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reslab.errors import INTERRUPTED_EXIT, ConfigError, DataError, ReslabError
from reslab.experiments.plan import (
    Plan,
    check_experiment_folder,
    config_mismatch,
    continued_config,
    stored_run_config,
)
from reslab.experiments.pool import Workers, resolve_jobs
from reslab.experiments.publishing import adopt_partial, partial_step, published_run
from reslab.experiments.publishing import publish as publish_folder
from reslab.experiments.report import write_outputs
from reslab.experiments.reuse import adopt_run, identical_run
from reslab.experiments.session import SessionRecord
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
            states[r.name] += " (left out: not asked for by --runs, --seeds or --depths)"
    return states


def _check_compatible(plan: Plan, run: RunSpec) -> None:
    """A run directory left by an earlier invocation must be a run, made with the same config."""
    if RunDir.status(plan.run_dir(run)) == "foreign":
        raise ReslabError(f"{plan.run_dir(run)} is not a reslab run directory; move it away")
    stored = stored_run_config(plan.run_dir(run))  # amp: auto read as the precision the run used
    bad = config_mismatch(stored, plan.configs[run.name]) if stored else None
    if bad is not None:
        key, have, want = bad
        raise ConfigError(
            f"{plan.run_dir(run)} was trained with {key}={have!r}, this invocation asks for {want!r}; "
            f"use another --out or delete that run directory"
        )


# --------------------------------------------------------------------------------------- execution


def _train_in_process(plan: Plan, run: RunSpec, progress: bool) -> None:
    from reslab.train import load_recipe, train

    cfg = load_recipe(plan.recipe, **continued_config(plan.configs[run.name], plan.run_dir(run)))
    # resume=True: a missing run starts fresh, an unfinished one continues from its last checkpoint.
    train(cfg, plan.run_dir(run), resume=True, progress=progress)


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
    record: SessionRecord | None = None
    slots: list[str | None] = field(default_factory=lambda: [None])  # a device per run trained at once

    def verb(self, run: RunSpec) -> str:
        """What happens to a pending run, for the log: "continuing" (it was started) or "training"."""
        return "continuing" if self.statuses[run.name] == "unfinished" else "training"

    def on_done(self, run: RunSpec) -> None:
        """Record a run the moment it finishes and publish it (with the report so far): a sweep killed
        later still leaves a complete, committable folder. A failure to publish is logged, not fatal."""
        if run.name not in self.reused:
            self.finished.append(run.name)
        if self.record is not None:
            self.record.progress(self.finished)
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

    def summary(self) -> str:
        """The line that says what this invocation is about to do."""
        n_jobs = len(self.slots)
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
    """Train the pending runs one after the other in this process (``progress``: its progress bars); a
    failed run is noted in ``sweep.failed`` and the next one starts."""
    pending = sweep.pending
    for i, run in enumerate(pending, 1):
        if sweep.reuse(run):  # another sweep finished the same training meanwhile
            continue
        sweep.log(f"[{i}/{len(pending)}] {sweep.verb(run)} {run.name}")
        try:
            _train_in_process(sweep.plan, run, progress)
            sweep.on_done(run)
        except (ConfigError, DataError):
            raise  # the same for every run (bad value, missing data): stop now
        except ReslabError as e:  # e.g. a diverged run: keep going, report it at the end
            sweep.failed.append(run.name)
            sweep.log(f"[{i}/{len(pending)}] {run.name} FAILED: {e}")


def _train_concurrently(sweep: _Sweep, progress: bool) -> None:
    """Train the pending runs in worker processes, ``len(sweep.slots)`` at a time, in their order
    (:class:`~reslab.experiments.pool.Workers`); a failed run is noted in ``sweep.failed`` and the others
    go on. ``progress`` is not used: a worker writes plain progress lines to ``logs/<run>.log``."""
    pending = sweep.pending
    with Workers(sweep.plan, sweep.slots, sweep.log) as workers:
        futures = {workers.submit(run, sweep.verb(run)): run for run in pending}
        for i, future in enumerate(as_completed(futures), 1):
            run, rc = futures[future], future.result()
            if rc == 0:
                sweep.log(f"[{i}/{len(pending)}] {run.name} finished")
                sweep.on_done(run)
                continue
            sweep.failed.append(run.name)
            why = (
                "stopped by a signal at its last checkpoint"
                if rc == INTERRUPTED_EXIT
                else f"FAILED (exit {rc}); see logs/{run.name}.log"
            )
            sweep.log(f"[{i}/{len(pending)}] {run.name} {why}")


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
    sweep, record = _start(plan, publish, log, only, jobs)
    train = _train_sequentially if len(sweep.slots) <= 1 else _train_concurrently
    status = "interrupted"
    try:
        train(sweep, progress)
        status = "finished"
    finally:
        wall = record.finish(status, sweep.finished, sweep.reused, sweep.failed)
        if status == "interrupted" and publish is not None:
            _publish_on_stop(plan.out, publish, log)
    result = sweep.result(wall)
    if report:
        # new data (trained, or from the pool): a look, recorded on the report that is read: the published
        # one where there is one (it holds runs the experiment folder may not, e.g. trained elsewhere)
        result.update(write_outputs(plan.out, look=publish is None))
        if publish is not None:
            result.update(publish_folder(plan.out, publish, look=True))
    if sweep.failed:
        where = "" if len(sweep.slots) <= 1 else f" (see {plan.out / 'logs'}/<run>.log)"
        raise ReslabError(
            f"{len(sweep.failed)} run(s) failed: {', '.join(sweep.failed)}{where}; the report shows the "
            "others; rerun to retry them"
        )
    return result


def _start(
    plan: Plan,
    publish: str | os.PathLike | None,
    log: Callable[[str], None],
    only: Collection[str] | None,
    jobs: int | None,
) -> tuple[_Sweep, SessionRecord]:
    """Check the folders and the runs asked for, put this invocation on record, decide what it does with
    each run and how many it trains at once, and say so."""
    check_run_names(plan, only)
    check_experiment_folder(plan.out, "--out")
    if publish is not None:
        check_experiment_folder(publish, "--publish")
    plan.out.mkdir(parents=True, exist_ok=True)
    for run in plan.runs:
        _check_compatible(plan, run)
    record = SessionRecord.start(plan)
    sweep = _select_runs(plan, publish, log, only)
    sweep.record = record
    n_jobs, sweep.slots = resolve_jobs(jobs, plan.device, len(sweep.pending))
    record.entry["jobs"] = n_jobs
    log(sweep.summary())
    return sweep, record


def _publish_on_stop(out: Path, publish: str | os.PathLike, log: Callable[[str], None]) -> None:
    """On an interrupted sweep, publish what it has, unfinished runs with their newest checkpoint, so a
    rerun from ``publish`` continues them; a failure here is logged and must not hide the interruption."""
    try:
        publish_folder(out, publish)
        log(f"published the finished runs and the unfinished runs' last checkpoints to {publish}")
    except Exception as e:
        log(f"publishing to {publish} on stopping failed ({type(e).__name__}: {e}); rerun to publish")
