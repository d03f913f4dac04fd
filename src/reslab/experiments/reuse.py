"""Runs shared between experiments: one network, one config, one seed is one training, whichever
experiment asked for it first.

The paper's experiments overlap: ``highway`` trains plain-20/56 and ResNet-20/56 exactly as
``degradation`` does, ``depth`` trains ResNet-20/56 again, ``relatives`` ResNet-56. Before a run trains,
:func:`identical_run` looks for a *finished* run with the same resolved config (every
:class:`~reslab.config.TrainConfig` field of the recipe plus the plan's overrides, the machine keys
aside: :data:`~reslab.config.MACHINE_KEYS`) in the sibling experiment folders (``--out``'s parent,
e.g. ``experiments/*/runs/*``) and in the sibling published folders (``--publish``'s parent, e.g.
``docs/results/*/runs/*``); :func:`adopt_run` copies it into this experiment (a local run with its
checkpoints, a published one with its small files) and records where it came from in ``reused.json``.
A run the config of which differs in anything that changes the arithmetic (model, seed, schedule,
``amp``, ...) is never taken.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from reslab import _io
from reslab.config import config_difference
from reslab.errors import ReslabError
from reslab.experiments.plan import Plan, stored_run_config
from reslab.experiments.specs import RunSpec
from reslab.train.rundir import RunDir, check_overwrite

REUSED_FILE = "reused.json"


def resolved_config(plan: Plan, run: RunSpec) -> dict[str, Any]:
    """Every training field of ``run``: the plan's recipe with its overrides."""
    from reslab.train import load_recipe

    return load_recipe(plan.recipe, **plan.configs[run.name]).to_dict()


def same_training(stored: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether a stored run config trains what ``want`` does: every field but the machine keys equal
    (:func:`reslab.config.config_difference`, the one identity rule)."""
    return not config_difference(stored, want)


def finished_config(run_dir: Path) -> dict[str, Any] | None:
    """The stored config of a finished run (``summary.json`` says finished; ``amp: auto`` read as the
    precision it computed in: :func:`~reslab.experiments.plan.stored_run_config`); None otherwise."""
    try:
        if not json.loads((run_dir / "summary.json").read_text(encoding="utf-8")).get("finished"):
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return stored_run_config(run_dir)


def identical_run(plan: Plan, run: RunSpec, roots: list[Path]) -> Path | None:
    """A finished run under ``root/*/runs/*`` (for each of ``roots``) that trained what ``run`` would,
    preferring one with checkpoints; ``None`` if there is none."""
    want = resolved_config(plan, run)
    own = plan.run_dir(run).resolve()
    found: list[Path] = []
    for root in dict.fromkeys(r.resolve() for r in roots if r.is_dir()):
        for d in sorted(root.glob("*/runs/*")):
            if d.resolve() == own or not d.is_dir():
                continue
            stored = finished_config(d)
            if stored is not None and same_training(stored, want):
                found.append(d)
    found.sort(key=lambda d: not (d / "checkpoints").is_dir())  # a run with weights first
    return found[0] if found else None


def copy_run(source: Path, dest: Path, note: dict[str, Any] | None = None) -> None:
    """Replace run folder ``dest`` by a copy of ``source`` (its lock and TensorBoard logs left out), with
    ``note`` written into it as ``reused.json`` when given: into a temporary folder first, then renamed,
    so an interruption leaves ``dest`` as it was."""
    if RunDir.status(dest) == "foreign":
        raise ReslabError(
            f"{dest} is not a reslab run directory; move it away before this run is copied there"
        )
    if RunDir.status(dest) in ("finished", "unfinished"):
        check_overwrite(dest)  # only a run's own files are replaced
    tmp = dest.with_name(dest.name + ".adopting")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("train.lock", "tensorboard"))
    if note is not None:
        _io.write_json(tmp / REUSED_FILE, note)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def adopt_run(source: Path, dest: Path) -> None:
    """Copy the finished run ``source`` to ``dest`` (which holds no finished run), noting where from."""
    copy_run(source, dest, {"from": str(source.resolve())})
