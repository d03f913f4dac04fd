"""An experiment's plan: its runs and their configs, stored as ``experiment.json`` in the experiment folder.

This module is the shared bottom of :mod:`reslab.experiments`: the runner (which trains a plan) and the
report (which reads one back) both import it, and it imports neither.

``experiment.json`` holds the plan (:meth:`Plan.to_json`) and one entry per invocation (``sessions``:
command, host, wall time, status), so a report can state how long the whole sweep took across sittings.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reslab import _io
from reslab.config import config_difference, field_names
from reslab.errors import ConfigError, ReslabError
from reslab.experiments.budgets import ALL_DATASETS, RECIPE
from reslab.experiments.specs import (
    RunSpec,
    budget_overrides,
    get_budget,
    get_experiment,
    parse_depths,
    parse_seeds,
    plan_runs,
)

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


def _engine_fields() -> set[str]:
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
    """Decide the runs of ``experiment`` and the config of each (nothing is trained or written): the
    record's networks (:data:`~reslab.experiments.specs.EXPERIMENTS`) at ``depths`` x ``seeds`` (the
    record's defaults at ``budget`` when None), each with the budget's config and ``overrides``."""
    exp = get_experiment(experiment)
    if dataset not in ALL_DATASETS:
        raise ConfigError(f"unknown data set {dataset!r}; choose from {', '.join(ALL_DATASETS[:3])}")
    recipe = get_budget(budget).recipe
    seed_t = tuple(seeds) if isinstance(seeds, tuple) else parse_seeds(seeds, experiment, budget)
    depth_t = tuple(depths) if isinstance(depths, tuple) else parse_depths(depths, experiment, budget)
    runs = plan_runs(experiment, depths=depth_t, seeds=seed_t, budget=budget)
    _check_zoo(experiment, runs, exp.default_depths)
    extra = dict(overrides or {})
    known = _engine_fields()
    bad = [k for k in extra if k.split(".")[0] not in known]
    if bad:
        raise ConfigError(f"--set: unknown config key {bad[0]!r}")
    base = budget_overrides(experiment, budget, dataset, known)
    machine = {"device": device, "data_dir": str(data_dir) if data_dir else None}
    machine = {k: v for k, v in machine.items() if v}
    configs = {
        r.name: {**base, "model": r.model, "model_kwargs": dict(r.model_kwargs), "seed": r.seed}
        | r.overrides
        | machine
        | extra
        for r in runs
    }
    out_path = Path(out) if out is not None else default_out(experiment, dataset, budget)
    return Plan(
        experiment=experiment,
        dataset=dataset,
        budget=budget,
        depths=depth_t,
        seeds=seed_t,
        out=out_path,
        recipe=recipe,
        runs=runs,
        configs=configs,
        device=device or "auto",
        extra=extra,
    )


def widen_plan(plan: Plan, folders: list[str | os.PathLike | None]) -> tuple[Plan, list[str]]:
    """``plan`` widened to the seeds and depths that ``folders`` (an invocation's ``--out`` and ``--publish``)
    recorded for the same experiment, data set and budget, and the names of the runs ``plan`` itself asked
    for (the only ones an invocation trains). An invocation with fewer ``--seeds`` or ``--depths`` than an
    earlier one thus rewrites its report over every network and seed the folder holds, never a subset (a
    narrower report over a published one dropped networks and flipped verdicts)."""
    asked = [r.name for r in plan.runs]
    seeds, depths = set(plan.seeds), set(plan.depths)
    for folder in folders:
        if folder is None or not (Path(folder) / PLAN_FILE).is_file():
            continue
        recorded = load_plan(folder)
        key = (recorded.experiment, recorded.dataset, recorded.budget)
        if key == (plan.experiment, plan.dataset, plan.budget):
            seeds |= set(recorded.seeds)
            depths |= set(recorded.depths)
    if seeds == set(plan.seeds) and depths == set(plan.depths):
        return plan, asked
    data_dir = next((c["data_dir"] for c in plan.configs.values() if c.get("data_dir")), None)
    wide = plan_experiment(
        plan.experiment, dataset=plan.dataset, budget=plan.budget, seeds=tuple(sorted(seeds)),
        depths=tuple(sorted(depths)), out=plan.out, device=None if plan.device == "auto" else plan.device,
        data_dir=data_dir, overrides=plan.extra,
    )  # fmt: skip
    return wide, asked


def _check_zoo(experiment: str, runs: list[RunSpec], default_depths: tuple[int, ...]) -> None:
    """Every run's model is in the zoo (one line naming the first that is not, and the default depths)."""
    from reslab.models import list_models

    missing = sorted({r.model for r in runs} - set(list_models()))
    if missing:
        raise ConfigError(
            f"{experiment}: no model {missing[0]!r} in the zoo for the requested depths; "
            f"choose --depths from {', '.join(map(str, default_depths))}"
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


def check_experiment_folder(folder: str | os.PathLike, flag: str) -> None:
    """Refuse (one line, naming its first entry) to write an experiment into ``folder`` unless it is
    missing, empty, or an experiment folder reslab wrote (its ``experiment.json`` loads as a plan): a
    user's folder is never written into, and nothing in it is replaced."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ReslabError(f"{flag} {folder} is a file; give a folder")
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return
    try:
        load_plan(folder)
    except ReslabError:
        first = PLAN_FILE if PLAN_FILE in entries else entries[0]
        raise ReslabError(
            f"{flag} {folder} exists and is not a reslab experiment folder (it holds {first}, which reslab "
            f"did not write{' or cannot read' if first == PLAN_FILE else ''}); choose another {flag}"
        ) from None


def read_sessions(out: Path) -> list[dict[str, Any]]:
    path = Path(out) / PLAN_FILE
    with contextlib.suppress(OSError, ValueError):
        return list(json.loads(path.read_text(encoding="utf-8")).get("sessions", []))
    return []


def write_plan(plan: Plan, sessions: list[dict[str, Any]], source: str | None = None) -> None:
    """Write ``experiment.json``: the plan and the invocations so far (atomic); ``source``: the
    experiment folder a published copy was made from."""
    extra = {"source": source} if source else {}
    _io.write_json(plan.out / PLAN_FILE, {**plan.to_json(), **extra, "sessions": sessions})


def rewrite_sessions(out: Path, sessions: list[dict[str, Any]]) -> None:
    """Rewrite the sessions of experiment folder ``out``'s ``experiment.json``, its plan and source kept."""
    source = json.loads((Path(out) / PLAN_FILE).read_text(encoding="utf-8")).get("source")
    write_plan(load_plan(out), sessions, source)


def _checkpoint_precision(run_dir: Path) -> str | None:
    """The precision the last checkpoint of ``run_dir`` records (``None``: none, or unreadable)."""
    from reslab.tasks.base import run_config
    from reslab.train.checkpoint import read_weights_metadata

    last = run_dir / "checkpoints" / "last.safetensors"
    if not last.is_file():
        return None
    try:
        return run_config(read_weights_metadata(last))[0].get("precision")  # the header only
    except ReslabError:
        return None


def stored_run_config(run_dir: Path) -> dict[str, Any] | None:
    """A run's ``config.yaml`` (``None``: missing or unreadable) with the ``precision`` the run computed in
    (where known), which the identity rule reads a stored ``amp: auto`` as
    (:func:`reslab.config.config_difference`): its ``summary.json``'s (a summary older than that field:
    fp32), else what its last checkpoint records, else the ``# precision:`` line its ``config.yaml`` ends
    with (a run not trained yet)."""
    import yaml

    try:
        text = (Path(run_dir) / "config.yaml").read_text(encoding="utf-8")
        stored = yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(stored, dict):
        return None
    precision = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        precision = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8")).get(
            "precision", "fp32"
        )
    if precision is None:  # an unfinished run: what its last checkpoint records
        precision = _checkpoint_precision(Path(run_dir))
    if precision is None:
        notes = [
            ln[len("# precision:") :].split() for ln in text.splitlines() if ln.startswith("# precision:")
        ]
        precision = notes[-1][0] if notes and notes[-1] else None
    return stored | {"precision": precision} if precision in ("fp32", "bf16") else stored


def continued_config(want: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The config to continue the run in ``run_dir`` with: ``want`` (the plan's), but where the run was
    started with ``amp: auto`` and computed in what ``want``'s ``amp`` asks for, ``amp: auto`` as stored
    (the engine keeps a resumed ``auto`` run's recorded precision: ``reslab.train.session.run_amp``)."""
    import yaml

    try:
        raw = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return want
    stored = stored_run_config(run_dir)
    if not isinstance(raw, dict) or raw.get("amp") != "auto" or stored is None or "amp" not in want:
        return want
    same = want["amp"] != "auto" and config_mismatch(stored, {"amp": want["amp"]}) is None
    return want | {"amp": "auto"} if same else want


def config_mismatch(stored: dict[str, Any], want: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """The first field where a stored run config differs from the planned one, ``(key, have, want)``, by
    the one identity rule (:func:`reslab.config.config_difference`): the fields the plan sets, not
    the machine keys. ``amp`` is compared: it changes the arithmetic (fp32 vs bf16)."""
    diff = config_difference(stored, want)
    return diff[0] if diff else None
