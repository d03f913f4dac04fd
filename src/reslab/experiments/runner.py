"""Plan and run an experiment: a set of ordinary training runs under one folder, then its figure and report.

Layout of an experiment folder::

    experiment.json     the plan (networks, configs, budget) and one entry per invocation (wall time, device)
    runs/<run>/         ordinary run directories of ``reslab.train`` (config.yaml, metrics.csv, summary.json...)
    logs/<run>.log      output of runs trained in a worker process (``jobs > 1``)
    results.csv         one row per run: final training/test error
    <name>.png          the figure, redrawn from the runs' CSV logs
    report.md           what was run, the figure, the table beside the paper's numbers, the claims

A rerun skips finished runs (``summary.json`` present), continues interrupted ones (``resume=True``) and
only then redraws the figure and rewrites the report. With ``jobs > 1`` runs train concurrently in worker
processes (``python -m reslab.experiments.worker``), deepest first; on CUDA the default is several per
GPU so small models keep the device busy.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reslab import _io
from reslab.errors import ConfigError, DataError, ReslabError
from reslab.experiments.specs import (
    ALL_DATASETS,
    BUDGETS,
    EXPERIMENTS,
    RECIPE,
    RunSpec,
    budget_overrides,
    parse_depths,
    parse_seeds,
    plan_runs,
)
from reslab.train.config import MACHINE_KEYS

PLAN_FILE = "experiment.json"


@dataclass
class Plan:
    experiment: str
    dataset: str
    budget: str
    depths: tuple[int, ...]
    seeds: tuple[int, ...]
    out: Path
    recipe: str
    runs: list[RunSpec]
    configs: dict[str, dict[str, Any]]  # run name -> TrainConfig fields on top of the recipe
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)  # the user's --set overrides

    def run_dir(self, run: RunSpec | str) -> Path:
        return self.out / "runs" / (run if isinstance(run, str) else run.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "dataset": self.dataset,
            "budget": self.budget,
            "depths": list(self.depths),
            "seeds": list(self.seeds),
            "recipe": self.recipe,
            "device": self.device,
            "extra": self.extra,
            "runs": [asdict(r) for r in self.runs],
            "configs": self.configs,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], out: Path) -> Plan:
        for r in d["runs"]:  # a run directory is out/runs/<name>: a stored name must not leave it
            name = r.get("name") if isinstance(r, dict) else None
            if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
                raise ValueError(f"run name {name!r} is not a plain folder name")
        return cls(
            experiment=d["experiment"],
            dataset=d["dataset"],
            budget=d["budget"],
            depths=tuple(d["depths"]),
            seeds=tuple(d["seeds"]),
            out=Path(out),
            recipe=d.get("recipe", RECIPE),
            runs=[RunSpec(**r) for r in d["runs"]],
            configs=d["configs"],
            device=d.get("device", "auto"),
            extra=d.get("extra", {}),
        )


def default_out(experiment: str, dataset: str, budget: str) -> Path:
    return Path("experiments") / f"{experiment}-{dataset}-{budget}"


def _engine_fields() -> set[str] | None:
    try:
        from reslab.train.config import field_names
    except ImportError:  # pragma: no cover - engine not installed
        return None
    return set(field_names())


def plan_experiment(
    experiment: str,
    *,
    dataset: str = "fashion-mnist",
    budget: str = "quick",
    seeds: str | int | tuple[int, ...] | None = None,
    depths: str | tuple[int, ...] | None = None,
    out: str | os.PathLike | None = None,
    device: str | None = None,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Plan:
    """Decide the runs of ``experiment`` and the config of each (nothing is trained or written)."""
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {experiment!r}; choose from {', '.join(EXPERIMENTS)}")
    if dataset not in ALL_DATASETS:
        raise ConfigError(f"unknown data set {dataset!r}; choose from {', '.join(ALL_DATASETS[:3])}")
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    seed_t = tuple(seeds) if isinstance(seeds, tuple) else parse_seeds(seeds)
    depth_t = tuple(depths) if isinstance(depths, tuple) else parse_depths(depths, experiment, budget)
    runs = plan_runs(experiment, depths=depth_t, seeds=seed_t, budget=budget)
    from reslab.models import list_models

    zoo = set(list_models())
    missing = sorted({r.model for r in runs} - zoo)
    if missing:
        raise ConfigError(
            f"{experiment}: no model {missing[0]!r} in the zoo for the requested depths; "
            f"choose --depths from {', '.join(map(str, EXPERIMENTS[experiment].default_depths))}"
        )
    known = _engine_fields()
    base = budget_overrides(experiment, budget, dataset, known)
    extra = dict(overrides or {})
    if known is not None:
        bad = [k for k in extra if k.split(".")[0] not in known]
        if bad:
            raise ConfigError(f"--set: unknown config key {bad[0]!r}")
    configs: dict[str, dict[str, Any]] = {}
    for r in runs:
        cfg = dict(base)
        cfg.update(model=r.model, model_kwargs=dict(r.model_kwargs), seed=r.seed)
        cfg.update(r.overrides)
        if device:
            cfg["device"] = device
        if data_dir:
            cfg["data_dir"] = str(data_dir)
        cfg.update(extra)
        configs[r.name] = cfg
    out_path = Path(out) if out is not None else default_out(experiment, dataset, budget)
    return Plan(
        experiment=experiment,
        dataset=dataset,
        budget=budget,
        depths=depth_t,
        seeds=seed_t,
        out=out_path,
        recipe=BUDGETS[budget].recipe,
        runs=runs,
        configs=configs,
        device=device or "auto",
        extra=extra,
    )


def load_plan(out: str | os.PathLike) -> Plan:
    """The plan stored in an experiment folder (``experiment.json``)."""
    path = Path(out) / PLAN_FILE
    if not path.is_file():
        raise ReslabError(f"{out} is not an experiment folder (no {PLAN_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Plan.from_json(data, Path(out))
    except (ValueError, KeyError, TypeError) as e:
        raise ReslabError(f"{path} is corrupt ({type(e).__name__}: {e})") from None


def read_sessions(out: Path) -> list[dict[str, Any]]:
    path = Path(out) / PLAN_FILE
    with contextlib.suppress(OSError, ValueError):
        return list(json.loads(path.read_text(encoding="utf-8")).get("sessions", []))
    return []


# ------------------------------------------------------------------------------------------ status


def run_status(run_dir: Path) -> str:
    """``done`` (summary.json says finished), ``partial`` (started: config.yaml there) or ``new``."""
    run_dir = Path(run_dir)
    summary = run_dir / "summary.json"
    if summary.is_file():
        with contextlib.suppress(OSError, ValueError):
            if json.loads(summary.read_text(encoding="utf-8")).get("finished", True):
                return "done"
    if (run_dir / "config.yaml").is_file():
        return "partial"
    return "new"


def _check_compatible(plan: Plan, run: RunSpec) -> None:
    """A run directory left by an earlier invocation must have been made with the same config."""
    path = plan.run_dir(run) / "config.yaml"
    if not path.is_file():
        return
    import yaml

    try:
        stored = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return
    for key, want in plan.configs[run.name].items():
        if key in MACHINE_KEYS or key not in stored:  # how a run executes may differ, not what it computes
            continue
        have = stored[key]
        if _norm(have) != _norm(want):
            raise ConfigError(
                f"{plan.run_dir(run)} was trained with {key}={have!r}, this invocation asks for {want!r}; "
                f"use another --out or delete that run directory"
            )


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in sorted(v.items())}
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


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


def _worker_command(request: Path) -> list[str]:
    return [sys.executable, "-m", "reslab.experiments.worker", str(request)]


def run_experiment(
    plan: Plan,
    *,
    jobs: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Train what is not finished, then write results.csv, the figure and report.md.

    Returns ``{"trained": [...], "skipped": [...], "resumed": [...], "wall_s": float, "out": Path}``.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    for run in plan.runs:
        _check_compatible(plan, run)
    sessions = read_sessions(out)
    started = time.time()
    session: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else "",
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "device": plan.device,
    }
    _write_plan(plan, [*sessions, {**session, "status": "running"}])

    statuses = {r.name: run_status(plan.run_dir(r)) for r in plan.runs}
    pending = [r for r in plan.runs if statuses[r.name] != "done"]
    skipped = [r.name for r in plan.runs if statuses[r.name] == "done"]
    resumed = [r.name for r in pending if statuses[r.name] == "partial"]
    # Deepest (slowest) first: the sweep ends sooner when runs train concurrently.
    pending.sort(key=lambda r: (-r.depth, plan.runs.index(r)))
    n_jobs, slots = resolve_jobs(jobs, plan.device, len(pending))
    session["jobs"] = n_jobs
    log(
        f"{plan.experiment}: {len(plan.runs)} runs in {out} — {len(skipped)} finished, "
        f"{len(resumed)} to continue, {len(pending) - len(resumed)} to train"
        + (f", {n_jobs} at a time" if n_jobs > 1 and pending else "")
    )
    failed: list[str] = []
    status = "interrupted"
    try:
        if n_jobs <= 1:
            for i, run in enumerate(pending, 1):
                verb = "continuing" if statuses[run.name] == "partial" else "training"
                log(f"[{i}/{len(pending)}] {verb} {run.name}")
                try:
                    _train_in_process(plan, run, progress)
                except (ConfigError, DataError):
                    raise  # the same for every run (bad value, missing data): stop now
                except ReslabError as e:  # e.g. a diverged run: keep going, report it at the end
                    failed.append(run.name)
                    log(f"[{i}/{len(pending)}] {run.name} FAILED: {e}")
        else:
            failed = _train_concurrently(plan, pending, statuses, slots, log)
        status = "finished"
    finally:
        wall = time.time() - started
        session.update(wall_s=round(wall, 2), trained=[r.name for r in pending], status=status)
        if failed:
            session["failed"] = failed
        _write_plan(plan, [*sessions, session])
    result: dict[str, Any] = {
        "trained": [r.name for r in pending if r.name not in failed],
        "resumed": resumed,
        "skipped": skipped,
        "failed": failed,
        "wall_s": wall,
        "out": out,
    }
    if report:
        from reslab.experiments.report import write_outputs

        result.update(write_outputs(out))
    if failed:
        where = "" if n_jobs <= 1 else f" (see {out / 'logs'}/<run>.log)"
        raise ReslabError(
            f"{len(failed)} run(s) failed: {', '.join(failed)}{where}; the report shows the others; "
            "rerun to retry them"
        )
    return result


def _write_plan(plan: Plan, sessions: list[dict[str, Any]]) -> None:
    _io.write_json(plan.out / PLAN_FILE, {**plan.to_json(), "sessions": sessions})


def _train_concurrently(
    plan: Plan,
    pending: list[RunSpec],
    statuses: dict[str, str],
    slots: list[str | None],
    log: Callable[[str], None],
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
                env = {**os.environ, "OMP_NUM_THREADS": str(cfg.get("threads") or threads)}
                proc = subprocess.Popen(
                    _worker_command(request), stdout=fh, stderr=subprocess.STDOUT, env=env
                )
                running[slot] = (proc, run, fh)
                verb = "continuing" if statuses[run.name] == "partial" else "training"
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
                    log(f"[{done}/{len(pending)}] {run.name} FAILED (exit {rc}); see logs/{run.name}.log")
                else:
                    log(f"[{done}/{len(pending)}] {run.name} finished")
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
    return failed
