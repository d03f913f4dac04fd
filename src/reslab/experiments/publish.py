"""Committed results: an experiment's numbers, small enough for git, that a rerun continues from.

``publish(out, dest)`` copies what a report is made of into ``dest`` (e.g. ``docs/results/
degradation-standard``) and writes the report and figures there::

    experiment.json          the plan, and every invocation so far (command, host, CPUs, wall time)
    runs/<run>/config.yaml   the run's full resolved config
    runs/<run>/summary.json  its final numbers, device and wall time
    runs/<run>/metrics.csv   its curves: one row per evaluation (train/val/test error, lr, elapsed)
    runs/<run>/train_log.csv its curves: the training loss/error every ``log_every`` steps
    report.md, results.csv, <experiment>.png

No checkpoint is copied (a ResNet-56 is 3.4 MB a file); a published folder is itself an experiment
folder without weights, so ``reslab plot DEST`` redraws it from these files alone.

Only finished runs are published. ``reslab reproduce ... --publish DEST`` publishes each run as it finishes
and, before training, counts a run as done when ``DEST`` holds it finished with the same config (machine
keys aside: :func:`reslab.experiments.plan.config_mismatch`): a fresh machine with a checkout of the
committed results continues the sweep instead of restarting it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

from reslab import _io
from reslab.errors import ConfigError
from reslab.experiments.plan import PLAN_FILE, Plan, config_mismatch, load_plan, read_sessions, write_plan
from reslab.experiments.report import write_outputs
from reslab.experiments.specs import RunSpec

RUN_FILES = ("config.yaml", "summary.json", "metrics.csv", "train_log.csv")


def _read_yaml(path: Path) -> dict[str, Any] | None:
    import yaml

    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return d if isinstance(d, dict) else None


def _finished(run_dir: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return bool(json.loads((run_dir / "summary.json").read_text(encoding="utf-8")).get("finished"))
    return False


def published_run(plan: Plan, run: RunSpec, dest: str | Path) -> bool:
    """True when ``dest`` holds ``run`` finished with the config ``plan`` asks for.

    A published run with another config is an error (one line), as for a run directory: the committed
    result would silently stand for a different experiment.
    """
    d = Path(dest) / "runs" / run.name
    if not _finished(d):
        return False
    stored = _read_yaml(d / "config.yaml")
    if stored is None:
        return False
    bad = config_mismatch(stored, plan.configs[run.name])
    if bad is not None:
        key, have, want = bad
        raise ConfigError(
            f"{d} was published with {key}={have!r}, this invocation asks for {want!r}; "
            "use another --publish folder or delete that run there"
        )
    return True


def publish_run(plan: Plan, run: RunSpec, dest: str | Path) -> bool:
    """Copy one finished run's small files to ``dest/runs/<run>``; False when it is not finished."""
    src = plan.run_dir(run)
    if not _finished(src):
        return False
    target = Path(dest) / "runs" / run.name
    target.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (src / name).is_file():
            _io.write_bytes(target / name, (src / name).read_bytes())
    return True


def _merge_sessions(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The invocations of both folders, each once (an invocation is its start time and host)."""
    seen: dict[tuple[Any, Any], dict[str, Any]] = {}
    for s in [*a, *b]:
        seen[(s.get("started"), s.get("host"))] = s  # the later copy (b) has the final status
    return sorted(seen.values(), key=lambda s: str(s.get("started", "")))


def publish(out: str | Path, dest: str | Path) -> dict[str, Any]:
    """Publish experiment folder ``out`` into ``dest``: finished runs, merged sessions, report, figures.

    ``dest`` may already hold runs published from another machine: they stay (their sessions too), and
    the report covers every run of the plan that either folder finished.
    """
    out, dest = Path(out), Path(dest)
    plan = load_plan(out)
    if (dest / PLAN_FILE).is_file():
        other = load_plan(dest)
        if (
            other.experiment != plan.experiment
            or other.budget != plan.budget
            or other.dataset != plan.dataset
        ):
            raise ConfigError(
                f"{dest} holds {other.experiment}/{other.budget}/{other.dataset}, not "
                f"{plan.experiment}/{plan.budget}/{plan.dataset}; publish to another folder"
            )
    for run in plan.runs:
        if _finished(plan.run_dir(run)):
            published_run(plan, run, dest)  # refuses a different config already published there
            publish_run(plan, run, dest)
    sessions = _merge_sessions(read_sessions(dest), read_sessions(out))
    published = dataclasses.replace(plan, out=dest)
    write_plan(published, sessions, source=str(out))
    return write_outputs(dest)
