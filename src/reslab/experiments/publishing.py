"""Committed results: an experiment's numbers, small enough for git, that a rerun continues from.

``publish(out, dest)`` copies what a report is made of into ``dest`` (e.g. ``docs/results/
degradation-standard``) and writes the report and figures there::

    experiment.json          the plan, and every invocation so far (command, host, CPUs, wall time)
    runs/<run>/config.yaml   the run's full resolved config
    runs/<run>/summary.json  its final numbers, device and wall time
    runs/<run>/metrics.csv   its curves: one row per evaluation (train/val/test error, lr, elapsed)
    runs/<run>/train_log.csv its curves: the training loss/error every ``log_every`` steps
    report.md, results.csv, <experiment>.png

A finished run's checkpoints are not copied (a ResNet-56 is 3.4 MB a file); a published folder is itself
an experiment folder, so ``reslab plot DEST`` redraws it from these files alone.

``reslab reproduce ... --publish DEST`` publishes each run as it finishes and, before training, counts a
run as done when ``DEST`` holds it finished with the same config (machine keys aside:
:func:`reslab.experiments.plan.config_mismatch`): a fresh machine with a checkout of the committed results
continues the sweep instead of restarting it.

A run longer than a sitting (DenseNet-BC-100 or ResNet-110 on a CPU) would never finish that way on
machines that do not outlive a sitting, so an unfinished run is published too, with its newest verified
checkpoint generation, when its sweep stops (Ctrl-C, SIGTERM) or another run finishes::

    runs/<run>/checkpoints/last.{manifest.json,safetensors,state.pt}   (no summary.json yet)

and a rerun on a machine whose experiment folder lacks that run (or holds it at an earlier step) starts
from the published checkpoint (:func:`adopt_partial`; the engine verifies it against its manifest before
resuming). When the run finishes its published checkpoint is removed. The checkpoint is weights (about
10 MB a run for ResNet-56 or DenseNet-BC-100, optimizer state included): where ``DEST`` is committed to
git, ignore ``DEST/**/checkpoints/`` (as this repository does) and the unfinished run continues only
within that checkout; a ``DEST`` kept elsewhere (a shared drive) carries it across machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import re
from pathlib import Path
from typing import Any

from reslab import _io
from reslab.errors import CheckpointError, ConfigError
from reslab.experiments.plan import (
    PLAN_FILE,
    Plan,
    config_mismatch,
    load_plan,
    read_sessions,
    stored_run_config,
    write_plan,
)
from reslab.experiments.report import write_outputs
from reslab.experiments.reuse import copy_run
from reslab.experiments.specs import RunSpec
from reslab.manifest import ROLES, check_generation, manifest_path, read_manifest
from reslab.owned import remove_own_files
from reslab.provenance import public_path, public_record, public_text

RUN_FILES = ("config.yaml", "summary.json", "metrics.csv", "train_log.csv")


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
    stored = stored_run_config(d)
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
    """Copy one finished run's small files to ``dest/runs/<run>`` (removing the checkpoint published
    while it was unfinished); False when it is not finished."""
    src = plan.run_dir(run)
    if not _finished(src):
        return False
    target = Path(dest) / "runs" / run.name
    copy_run_files(src, target)
    remove_own_files(target / "checkpoints")  # the checkpoint published while it was unfinished
    return True


def copy_run_files(src: Path, target: Path, names: tuple[str, ...] = RUN_FILES) -> None:
    """Copy the files ``names`` (an experiment run's :data:`RUN_FILES`) that exist in run folder ``src`` to
    ``target``, as a published record holds them: the summary's paths relative to the run folder
    (:func:`relative_summary`), any other absolute path in a text record (``eval.json``'s checkpoint) as
    :func:`reslab.provenance.public_path` writes it (relative to the run folder or the current directory,
    else elided). ``config.yaml`` is copied as it is: it is the run's identity, which a rerun compares
    with its own config (:func:`published_run`), and a path in it (``init_from``) is part of that."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src / name).is_file():
            data = (src / name).read_bytes()
            if name == "summary.json":
                data = relative_summary(data, src)
            elif Path(name).suffix in _TEXT_RECORDS:
                data = public_text(data.decode("utf-8"), anchor=src.absolute()).encode("utf-8")
            _io.write_bytes(target / name, data)


_TEXT_RECORDS = (".json", ".md", ".txt")  # a run's records whose paths are made public


def relative_summary(data: bytes, run_dir: Path) -> bytes:
    """A run's ``summary.json`` with the paths it names (``run_dir``, ``checkpoints``, ``curves``) relative
    to the run folder, as a published record holds them: the training machine's paths mean nothing
    elsewhere, absolute or relative to where it was trained from (``experiments/rl/<run>/curves.png``). A
    path through the run's folder (named as ``run_dir`` or the summary's ``run_dir`` is) keeps what follows
    it; another absolute path keeps its file name; anything else stays as it was."""
    try:
        summary = json.loads(data)
    except ValueError:
        return data
    if not isinstance(summary, dict):
        return data
    names = {Path(run_dir).name, Path(str(summary.get("run_dir") or run_dir)).name} - {"", "."}

    def rel(p: Any) -> Any:
        if isinstance(p, dict):
            return {k: rel(v) for k, v in p.items()}
        if not isinstance(p, str):
            return p
        parts = Path(p).parts
        at = [i for i, part in enumerate(parts) if part in names]
        if at:
            return Path(*parts[at[-1] + 1 :]).as_posix() if at[-1] + 1 < len(parts) else "."
        return Path(p).name if Path(p).is_absolute() else p

    summary = {
        k: "." if k == "run_dir" else rel(v) if k in ("checkpoints", "curves") else v
        for k, v in summary.items()
    }
    return (json.dumps(summary, indent=2) + "\n").encode()


def _checkpoint_step(run_dir: Path) -> int | None:
    """The step of ``run_dir``'s newest checkpoint generation (from its manifest), None if it has none or
    its manifest is damaged."""
    with contextlib.suppress(CheckpointError):
        manifest = read_manifest(run_dir / "checkpoints", "last")
        return None if manifest is None else manifest.step
    return None


def publish_partial(plan: Plan, run: RunSpec, dest: str | Path) -> bool:
    """Copy an unfinished run's curves, config and newest checkpoint generation to ``dest/runs/<run>``,
    unless ``dest`` already holds it at the same or a later step. False when nothing was copied."""
    src = plan.run_dir(run)
    step = _checkpoint_step(src)
    target = Path(dest) / "runs" / run.name
    if _finished(src) or step is None or _finished(target):
        return False
    have = _checkpoint_step(target)
    if have is not None and have >= step:
        return False
    # The run may be training in a worker right now, rotating its generations: copy only bytes verified
    # against the manifest that was on disk before and after they were read.
    ckdir = src / "checkpoints"
    try:
        before = manifest_path(ckdir, "last").read_bytes()
        gen = check_generation(ckdir, "last", keep=tuple(ROLES))
        after = manifest_path(ckdir, "last").read_bytes()
    except OSError:
        return False
    if before != after or not gen.sound or set(gen.data) != set(ROLES):
        return False
    copy_run_files(src, target)
    (target / "checkpoints").mkdir(exist_ok=True)
    for role, suffix in ROLES.items():
        _io.write_bytes(target / "checkpoints" / f"last{suffix}", gen.data[role])
    _io.write_bytes(manifest_path(target / "checkpoints", "last"), after)  # last: it vouches for the rest
    return True


def partial_step(plan: Plan, run: RunSpec, dest: str | Path) -> int | None:
    """The step of the unfinished run ``dest`` publishes for ``run``, when the experiment folder does not
    hold the run at that step or later (None: nothing to continue from there)."""
    published = Path(dest) / "runs" / run.name
    step = _checkpoint_step(published)
    local = plan.run_dir(run)
    if step is None or _finished(published) or _finished(local):
        return None
    have = _checkpoint_step(local)
    return None if have is not None and have >= step else step


def adopt_partial(plan: Plan, run: RunSpec, dest: str | Path) -> int | None:
    """Start ``run`` in the experiment folder from the unfinished run published in ``dest``
    (:func:`partial_step`); returns that step (None: nothing adopted).

    The published config must match the plan's (one line otherwise, as for a finished run)."""
    step = partial_step(plan, run, dest)
    if step is None:
        return None
    published, local = Path(dest) / "runs" / run.name, plan.run_dir(run)
    stored = stored_run_config(published)
    bad = None if stored is None else config_mismatch(stored, plan.configs[run.name])
    if stored is None or bad is not None:
        raise ConfigError(
            f"{published} holds an unfinished run "
            + (
                f"with {bad[0]}={bad[1]!r}, this invocation asks for {bad[2]!r}"
                if bad
                else "without its config"
            )
            + "; use another --publish folder or delete that run there"
        )
    copy_run(published, local)
    return step


def _merge_sessions(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The invocations of both folders, each once (an invocation is its start time and host)."""
    seen: dict[tuple[Any, Any], dict[str, Any]] = {}
    for s in [*a, *b]:
        key = (s.get("started"), s.get("host"))
        # the later copy (b) has the final status; what only the other holds (a look recorded in the
        # published copy: reslab.experiments.looks) is kept
        seen[key] = {**seen.get(key, {}), **s}
    return sorted(seen.values(), key=lambda s: str(s.get("started", "")))


def publish(out: str | Path, dest: str | Path, *, look: bool = False) -> dict[str, Any]:
    """Publish experiment folder ``out`` into ``dest``: finished runs, merged sessions, report, figures. The
    sessions' commands and paths and the folder it came from (``source``) are written as
    :func:`reslab.provenance.public_path` says: relative to the current directory, or elided.

    ``dest`` may already hold runs published from another machine: they stay (their sessions too), and
    the report covers every run of the plan that either folder finished. ``look``: the report is a look at
    the data (the end of an invocation that trained something), recorded in ``dest``'s newest session on the
    claims as ``dest``'s report judges them (:mod:`reslab.experiments.looks`).
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
        else:
            publish_partial(plan, run, dest)
    # the record holds the invocations' paths as the reader's checkout names them (public_path)
    sessions = public_record(_merge_sessions(read_sessions(dest), read_sessions(out)))
    published = dataclasses.replace(plan, out=dest)
    write_plan(published, sessions, source=public_path(out))
    return write_outputs(dest, look=look)


# ------------------------------------------------------------------------------- the README's blocks

README_DROP = ("depth", "best test error %")  # report columns the README's tables leave out


def readme_block(report: str, name: str) -> str:
    """The README's summary of the published ``docs/results/NAME/report.md``: its figures, its results table (without the depth and
    best-error columns) and one line per claim with its verdict, p-values and evidence, word for word."""
    lines = report.splitlines()
    figures = [
        re.sub(r"\]\((?!/)([^)]+)\)", rf"](docs/results/{name}/\1)", line) + "\n"
        for line in lines
        if line.startswith("![")
    ]
    start = lines.index("## Results") + 2
    table = list(itertools.takewhile(lambda x: x.startswith("|"), lines[start:]))
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in table]
    keep = [i for i, name in enumerate(cells[0]) if name not in README_DROP]
    rows = ["| " + " | ".join(row[i] for i in keep) + " |" for row in cells]
    rows[1] = "|" + "---|" * len(keep)
    claims = []
    for line in lines[lines.index("## Claims") :]:
        found = re.match(r"- \*\*(.+?)\*\* — ([A-Z ]+?)( \(p [^)]*\))?: (.*)$", line)
        if found:
            claim, verdict, p, evidence = found.groups()
            claims.append(f"- {claim}: **{verdict}**{p or ''}: {evidence}")
    return "\n".join([*figures, *rows, "", *claims])


def sync_readme(readme: str | Path, results: str | Path) -> list[str]:
    """Rewrite each ``<!-- NAME -->`` ... ``<!-- /NAME -->`` block of ``readme`` from
    ``results/NAME/report.md`` (:func:`readme_block`); returns the names of the blocks that changed."""
    from reslab._io import write_bytes

    readme, results = Path(readme), Path(results)
    text = readme.read_text(encoding="utf-8")
    changed = []

    def fill(m: re.Match[str]) -> str:
        block = readme_block((results / m.group(1) / "report.md").read_text(encoding="utf-8"), m.group(1))
        if block != m.group(2).strip("\n"):
            changed.append(m.group(1))
        return f"<!-- {m.group(1)} -->\n{block}\n<!-- /{m.group(1)} -->"

    new = re.sub(r"<!-- ([\w-]+) -->\n(.*?)<!-- /\1 -->", fill, text, flags=re.S)
    if new != text:
        write_bytes(readme, new.encode("utf-8"))
    return changed
