"""``reslab verify RUN_DIR``: which files of a run directory are sound, which are damaged, and what
``reslab train --resume`` would do with it. Reads only; writes nothing.

Checked: every checkpoint generation (``last``, ``prev``, ``best``) against its manifest (SHA-256 and size
of each file, :mod:`reslab.manifest`); ``config.yaml`` (parses as a config; agrees with the config stored
in the newest sound checkpoint); ``metrics.csv`` and ``train_log.csv`` (no torn row, steps in order,
rows past the checkpoint's step counted: resume recomputes them); ``summary.json`` of a finished run
(agrees with the last checkpoint's step).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reslab.config import RESUME_KEYS, TrainConfig, config_difference
from reslab.errors import CheckpointError, ReslabError
from reslab.manifest import INTERRUPTED, Generation, check_generation, has_manifests, role_path
from reslab.train.checkpoint import CKPT_DIR, GENERATIONS
from reslab.train.recipe import read_yaml


@dataclass
class Finding:
    item: str  # a generation name or a file name
    ok: bool  # nothing damaged (an interrupted save is not damage: resume passes over it)
    detail: str
    label: str = ""  # shown instead of ok / DAMAGED ("partial": a save was interrupted)


@dataclass
class RunReport:
    run_dir: Path
    findings: list[Finding] = field(default_factory=list)
    resume: str = ""  # what `reslab train --resume` would do
    in_use: str | None = None  # another process trains into the run right now

    @property
    def sound(self) -> bool:
        return all(f.ok for f in self.findings)

    def lines(self) -> list[str]:
        out = [f"{self.run_dir}: {'sound' if self.sound else 'DAMAGED'}"]
        if self.in_use:
            out.append(f"  note: {self.in_use}")
        width = max((len(f.item) for f in self.findings), default=4)
        out += [
            f"  {f.item:<{width}}  {f.label or ('ok' if f.ok else 'DAMAGED'):<7}  {f.detail}"
            for f in self.findings
        ]
        out.append(f"resume would: {self.resume}")
        return out


def verify_run(run_dir: str | os.PathLike) -> RunReport:
    """Check ``run_dir`` (see the module docstring); a folder that is no run: :class:`CheckpointError`."""
    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise CheckpointError(f"{run} is not a reslab run directory (no config.yaml)")
    report = RunReport(run, in_use=_in_use(run))
    ckdir = run / CKPT_DIR
    legacy = not has_manifests(ckdir)
    gens = {name: check_generation(ckdir, name) for name in GENERATIONS}
    first_save = legacy and _first_save_interrupted(run, gens)
    report.findings += [_generation_finding(gen, legacy, first_save) for gen in gens.values()]
    newest = next((gens[n] for n in ("last", "prev") if gens[n].sound or gens[n].legacy), None)
    report.findings.append(_config_finding(run, ckdir, newest))
    step = newest.step if newest is not None and newest.step is not None else _legacy_step(ckdir, newest)
    for name in ("metrics.csv", "train_log.csv"):
        if (run / name).exists():
            report.findings.append(_log_finding(run / name, step))
    finished = _finished_step(run)
    if finished is not None:
        last = gens["last"]
        ok = not last.sound or last.step == finished  # (a damaged last is reported on its own line)
        detail = f"finished at step {finished}" + (
            "" if ok else f", but checkpoint last is of step {last.step}"
        )
        report.findings.append(Finding("summary.json", ok, detail))
    report.resume = (
        "start again from step 0 (the first checkpoint's save was interrupted before its manifest)"
        if first_save
        else _resume_plan(gens, legacy, finished, run)
    )
    return report


def _first_save_interrupted(run: Path, gens: dict[str, Generation]) -> bool:
    """No manifest yet, and ``last`` is this reslab's first save of the run (no ``prev``): a kill before
    its manifest, which resume answers by starting again from step 0."""
    from reslab._io import torch_load

    if gens["last"].legacy or gens["last"].problems == ["missing"] or gens["prev"].problems != ["missing"]:
        return False
    try:
        return torch_load(role_path(run / CKPT_DIR, "last", "state")).get("save_index") == 1
    except (ReslabError, AttributeError):
        return False


def _generation_finding(gen: Generation, legacy: bool, first_save: bool = False) -> Finding:
    if legacy and gen.legacy:
        return Finding(gen.name, True, "no checksums (an older reslab's run): `--resume` checksums it")
    if first_save and gen.name == "last":
        return Finding(gen.name, True, f"the run's first save, {INTERRUPTED} before its manifest", "partial")
    if gen.sound:
        files = ", ".join(role_path(Path(), gen.name, r).name for r in gen.manifest.files)  # type: ignore[union-attr]
        return Finding(gen.name, True, f"step {gen.step}: {files} match their manifest (sha256)")
    if gen.problems == ["missing"]:
        # `prev` appears at the second checkpoint, `best` at the first evaluation
        return Finding(gen.name, gen.name != "last", "none")
    detail = (f"step {gen.step}: " if gen.step is not None else "") + gen.describe()
    if all(INTERRUPTED in p for p in gen.problems):  # a crash mid-save, not damage: nothing to repair
        return Finding(gen.name, True, detail, label="partial")
    return Finding(gen.name, False, detail)


def _config_finding(run: Path, ckdir: Path, newest: Generation | None) -> Finding:
    try:
        cfg = TrainConfig.from_dict(
            read_yaml(run / "config.yaml", "run config"), source=str(run / "config.yaml")
        )
    except ReslabError as e:
        return Finding("config.yaml", False, str(e))
    if newest is None or not (role_path(ckdir, newest.name, "weights")).is_file():
        return Finding("config.yaml", True, "parses")
    stored = _weights_config(role_path(ckdir, newest.name, "weights"))
    diff = config_difference(stored, cfg.to_dict(), ignore=RESUME_KEYS) if stored else []
    if diff:
        k, was, now = diff[0]
        return Finding(
            "config.yaml", False, f"{k}={now!r} but checkpoint {newest.name} was trained with {was!r}"
        )
    return Finding("config.yaml", True, f"parses; agrees with checkpoint {newest.name}")


def _weights_config(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
        n = int.from_bytes(data[:8], "little")
        cfg = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["config"])
        return cfg if isinstance(cfg, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _legacy_step(ckdir: Path, gen: Generation | None) -> int | None:
    if gen is None:
        return None
    from reslab._io import torch_load

    try:
        return int(torch_load(role_path(ckdir, gen.name, "state"))["step"])
    except (ReslabError, KeyError, TypeError, ValueError):
        return None


def _log_finding(path: Path, step: int | None) -> Finding:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return Finding(path.name, False, f"unreadable ({type(e).__name__})")
    if not rows or "step" not in rows[0]:
        return Finding(path.name, False, "no header with a step column")
    col = rows[0].index("step")
    steps: list[int] = []
    for i, r in enumerate(rows[1:], 2):
        try:
            if len(r) != len(rows[0]):
                raise ValueError
            steps.append(int(float(r[col])))
        except ValueError:
            return Finding(path.name, False, f"row {i} is torn or not a number")
    if any(b < a for a, b in itertools.pairwise(steps)):
        return Finding(path.name, False, "steps out of order")
    detail = f"{len(steps)} row{'' if len(steps) == 1 else 's'}" + (
        f", up to step {steps[-1]}" if steps else ""
    )
    if step is not None and steps and steps[-1] > step:
        later = sum(s > step for s in steps)
        detail += f"; {later} after the checkpoint's step {step} (resume recomputes them)"
    return Finding(path.name, True, detail)


def _finished_step(run: Path) -> int | None:
    try:
        s = json.loads((run / "summary.json").read_text())
        return int(s["final"]["step"]) if s.get("finished") else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _resume_plan(gens: dict[str, Generation], legacy: bool, finished: int | None, run: Path) -> str:
    last, prev = gens["last"], gens["prev"]
    if finished is not None:  # `--resume` of a finished run only says so
        return f"nothing: the run is finished (step {finished}); eval/export/predict read checkpoint best"
    if legacy and (last.legacy or prev.legacy):
        name = "last" if last.legacy else "prev"
        return f"continue from {name} unverified (an older reslab's run), then checksum every checkpoint"
    if legacy and last.problems != ["missing"]:
        return f"refuse (exit 2): checkpoints this reslab wrote have no manifest; nothing would be changed in {run}"
    if last.sound:
        return f"continue from last (step {last.step})"
    if prev.sound:
        return f"fall back to prev (step {prev.step}), redoing the steps after it; last is not usable"
    if last.problems == ["missing"] and prev.problems == ["missing"]:
        return "start from step 0 (no checkpoint yet)"
    return f"refuse (no sound checkpoint, exit 2); nothing would be changed or deleted in {run}"


def _in_use(run: Path) -> str | None:
    """A live training process holds the run (its pid is in ``train.lock``, which it empties on exit): a
    save in progress can then look like an interrupted one. Read only: taking the lock, even for an
    instant, could turn that process's own start away."""
    try:
        pid = int((run / "train.lock").read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return f"reslab process {pid} is training into it: a save in progress may show as interrupted"
