"""One pool of runs: a report counts every finished seed of its networks, wherever it was trained.

The experiments overlap (``highway`` and ``depth`` train ResNet-20/56 as ``degradation`` does), and a
sweep may have trained more seeds of a network than another experiment plans. A report would otherwise
judge the same claim from a subset of the same runs and reach another verdict, and an invocation with
fewer ``--seeds`` than an earlier one (the budget's default) would drop the seeds that one trained.
:func:`pooled_runs` finds, in an experiment folder beyond the plan's seeds and beside it (its sibling
folders' ``runs/*``), every *finished* run that trained one of the plan's networks with a seed the plan
does not have: the same resolved config as the plan's run of
that network but the seed (:func:`reslab.config.config_difference`, the one identity rule, machine keys
aside) and the same *resolved* precision (``summary.json``'s ``precision``: fp32 or bf16, not the word
``auto``: the project's machines differ in which they run; a planned ``auto`` is read as the precision the
plan's own finished runs computed in, so an ``amp: off`` run meets an fp32 ``auto`` one). Such a run counts
once, in every report that needs it; the report lists it with the experiment that trained it and its git revision.
A seed of such a network that a sibling experiment plans and nobody has finished counts as not started in
every report of the network (:func:`_planned_elsewhere`): one network, one set of planned seeds, one
denominator ("6/8") wherever it is reported.

A planned run may also have been *copied* into this experiment from another that trained it
(:mod:`reslab.experiments.reuse`; an invocation's record lists it under ``reused``):
:func:`copied_runs` names the experiment that trained it, so every report credits a run to the same
experiment and lists it with the pool's runs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from reslab.errors import ReslabError
from reslab.experiments.plan import PLAN_FILE, Plan, load_plan, read_sessions
from reslab.experiments.results import RunResult, not_started, read_run
from reslab.experiments.reuse import finished_config, resolved_config, same_training
from reslab.experiments.specs import RunSpec


def _summary(run_dir: Path) -> dict[str, Any]:
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _precision(summary: dict[str, Any]) -> str:
    return str(summary.get("precision") or "fp32")  # runs older than the field trained in fp32


def pooled_runs(plan: Plan, folder: str | Path) -> list[RunResult]:
    """The finished runs of the plan's networks with seeds the plan has not finished (module docstring):
    those ``folder`` holds beyond the plan's seeds (an earlier invocation with more ``--seeds`` trained
    them), then those beside it (``folder/../*/runs/*``), each read as a run of that network (``source``:
    the folder that trained it)."""
    folder = Path(folder).resolve()
    networks: dict[tuple[str, int], RunSpec] = {}
    for run in plan.runs:
        networks.setdefault(run.key, run)
    # a seed the plan has counts as its own only once finished here: a planned run not trained yet (or
    # unfinished) is taken from the pool where another experiment finished it, and replaces it
    own = {run.name: _summary(plan.run_dir(run)) for run in plan.runs}
    finished = [run for run in plan.runs if own[run.name].get("finished")]
    seeds = {key: {r.seed for r in finished if r.key == key} for key in networks}
    wanted = {key: resolved_config(plan, spec) for key, spec in networks.items()}
    # the resolved precision of the network's finished runs here (None: none finished yet)
    precision = {
        key: next((_precision(own[r.name]) for r in finished if r.key == key), None) for key in networks
    }
    for key, want in wanted.items():  # planned `auto`: what its runs here computed in
        if want.get("amp") == "auto" and precision[key]:
            want["amp"] = {"fp32": "off", "bf16": "bf16"}.get(precision[key], "auto")
    found: list[RunResult] = []
    planned = {run.name for run in plan.runs}
    # this folder's own runs first (seeds an earlier invocation with more seeds trained here), then siblings'
    own_extra = [d for d in sorted((folder / "runs").glob("*")) if d.name not in planned]
    siblings = [d for d in sorted(folder.parent.glob("*/runs/*")) if d.parent.parent.resolve() != folder]
    for run_dir in own_extra + siblings:
        if not run_dir.is_dir():
            continue
        stored = finished_config(run_dir)
        if stored is None:
            continue
        seed, summary = stored.get("seed"), _summary(run_dir)
        for key, spec in networks.items():
            if seed in seeds[key] or not isinstance(seed, int):
                continue
            same_precision = precision[key] in (None, _precision(summary))
            if same_precision and same_training(stored, wanted[key] | {"seed": seed}):
                name = f"{spec.name.rsplit('-s', 1)[0]}-s{seed}"
                result = read_run(run_dir, dataclasses.replace(spec, name=name, seed=seed))
                result.source = (
                    f"{run_dir.parent.parent.name} (git {str(summary.get('git_revision') or '?')[:7]})"
                )
                found.append(result)
                seeds[key].add(seed)
                break
    return found + _planned_elsewhere(plan, folder, networks, wanted, seeds)


def _planned_elsewhere(
    plan: Plan,
    folder: Path,
    networks: dict[tuple[str, int], RunSpec],
    wanted: dict[tuple[str, int], dict[str, Any]],
    seeds: dict[tuple[str, int], set[int]],
) -> list[RunResult]:
    """The runs of the plan's networks that a sibling experiment's plan has and nobody finished (with a
    seed neither this plan nor the pool has): read as not started here whatever their state there, so
    that one network counts one set of planned seeds, the pool's, in every report (a report's ``runs``
    column and figure legend: "6/8", not 6/8 in one report and 6/7 in another)."""
    mine = {r.seed for r in plan.runs}
    out: list[RunResult] = []
    for exp_json in sorted(folder.parent.glob(f"*/{PLAN_FILE}")):
        if exp_json.parent.resolve() == folder:
            continue
        try:
            other = load_plan(exp_json.parent)
        except ReslabError:
            continue
        for run in other.runs:
            for key, spec in networks.items():
                if run.seed in seeds[key] or run.seed in mine or other.recipe != plan.recipe:
                    continue
                if _summary(other.run_dir(run)).get("finished"):  # finished, yet not this network's
                    continue
                if same_training(resolved_config(other, run), wanted[key] | {"seed": run.seed}):
                    name = f"{spec.name.rsplit('-s', 1)[0]}-s{run.seed}"
                    out.append(not_started(dataclasses.replace(spec, name=name, seed=run.seed)))
                    seeds[key].add(run.seed)
                    break
    return out


# summary.json keys that hold paths: a copy of a run may differ in them (they are rewritten on publishing)
_PATH_KEYS = ("run_dir", "checkpoints", "curves")


def _fingerprint(summary: dict[str, Any]) -> str:
    """One training's fingerprint: its finished summary (wall time, revision, final numbers), paths aside."""
    return json.dumps({k: v for k, v in summary.items() if k not in _PATH_KEYS}, sort_keys=True, default=str)


def _listed(folder: Path, key: str) -> dict[str, str]:
    """Run name -> the start of the earliest invocation of experiment ``folder`` that lists it under ``key``
    (``trained``: it trained it, or began to; ``reused``: it copied it from another experiment)."""
    first: dict[str, str] = {}
    for session in read_sessions(folder):
        names = session.get(key) or []
        for name in names if isinstance(names, (list, dict)) else []:
            first.setdefault(str(name), str(session.get("started", "")))
    return first


def copied_runs(plan: Plan, folder: str | Path) -> dict[str, str]:
    """The plan's finished runs that an invocation copied from another experiment (module docstring):
    run name -> "<experiment> (git <revision>)" of the one that trained it. That is, among this folder and
    its siblings, a folder holding the same training (its ``summary.json``, paths aside) whose records list
    it as trained, preferring one that never copied it in (a run copied back and forth keeps its trainer),
    then the earliest; a run this folder trained itself is left out."""
    folder = Path(folder).resolve()
    copied = _listed(folder, "reused")
    wanted: dict[str, list[str]] = {}  # fingerprint -> the copied runs of it (one, unless two are the same)
    revision: dict[str, str] = {}
    for run in plan.runs:
        summary = _summary(plan.run_dir(run))
        if run.name in copied and summary.get("finished"):
            wanted.setdefault(_fingerprint(summary), []).append(run.name)
            revision[run.name] = str(summary.get("git_revision") or "?")[:7]
    best: dict[str, tuple[tuple[bool, str], Path]] = {}
    for exp_json in sorted(folder.parent.glob(f"*/{PLAN_FILE}")) if wanted else []:
        other = exp_json.parent.resolve()
        trained, reused = _listed(other, "trained"), _listed(other, "reused")
        for run_dir in sorted((other / "runs").glob("*")):
            if run_dir.name not in trained:
                continue
            rank = (run_dir.name in reused, trained[run_dir.name])
            for name in wanted.get(_fingerprint(_summary(run_dir)), []):
                if name not in best or rank < best[name][0]:
                    best[name] = (rank, other)
    return {
        name: f"{trainer.name} (git {revision[name]})"
        for name, (_, trainer) in best.items()
        if trainer != folder
    }
