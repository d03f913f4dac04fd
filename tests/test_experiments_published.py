"""The published reports (docs/results/<experiment>-<budget>/) redraw byte for byte from their runs' files.

``reslab plot DEST`` rewrites report.md, results.csv and the figure of a published folder from its
experiment.json and runs/ alone: a change to the experiments' code that would change a committed report
(a verdict, a number, a row's order, a sentence) shows here. Two things the redraw takes from the machine
it runs on, not from the runs, are held to the published ones: the software versions the report names
(those of the published report) and the figure's rendering, compared only under the matplotlib version
that drew it (its PNG says which).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import reslab.provenance
from reslab.experiments import redraw
from reslab.experiments.plan import load_plan
from reslab.experiments.specs import EXPERIMENTS

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
PUBLISHED = sorted(p.parent.name for p in RESULTS.glob("*/experiment.json"))


def _published_versions(report: str) -> dict[str, str]:
    """The software the published report names: ``software: reslab X, Python Y, torch Z[, CUDA W]``."""
    found = re.search(r"software: reslab (\S+), Python (\S+), torch ([^,;]+)(?:, CUDA ([^;.]+))?", report)
    assert found, "the report names its software"
    keys = ("reslab", "python", "torch", "cuda")
    return {k: v for k, v in zip(keys, found.groups()) if v is not None}


def _matplotlib_of(png: bytes) -> str | None:
    found = re.search(rb"Matplotlib version([0-9][^,\x00]*)", png)
    return found.group(1).decode() if found else None


def test_every_published_experiment_is_checked() -> None:
    assert {f"{name}-standard" for name in EXPERIMENTS} <= set(PUBLISHED), PUBLISHED


@pytest.mark.parametrize("name", PUBLISHED)
def test_a_published_report_redraws_byte_identical(name: str, tmp_path: Path, monkeypatch) -> None:
    import matplotlib

    src = RESULTS / name
    dest = tmp_path / "docs" / "results" / name  # the report names its folder: the same relative path
    for sibling in PUBLISHED:  # the pool: a report counts its networks' seeds from the other folders too
        shutil.copytree(RESULTS / sibling, dest.parent / sibling, ignore=shutil.ignore_patterns("*.png"))
    shutil.rmtree(dest)
    shutil.copytree(src, dest)
    monkeypatch.chdir(tmp_path)
    published = (src / "report.md").read_text(encoding="utf-8")
    monkeypatch.setattr(reslab.provenance, "versions", lambda: _published_versions(published))
    figure = f"{EXPERIMENTS[load_plan(dest).experiment].name}.png"

    redraw(Path("docs") / "results" / name)
    if _matplotlib_of((src / figure).read_bytes()) != matplotlib.__version__:
        # Another matplotlib renders otherwise: the figure is left as published, the rest compared.
        shutil.copyfile(src / figure, dest / figure)

    files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())
    changed = [str(f) for f in files if (src / f).read_bytes() != (dest / f).read_bytes()]
    assert not changed, f"{name}: the redraw changed {changed}"


def test_the_readme_says_what_the_published_reports_say(tmp_path):
    """Each README block ``<!-- NAME -->`` is NAME's report: its table and its claims with their verdicts
    and p-values, word for word (``make readme`` rewrites them), so no claim carries two verdicts."""
    from reslab.experiments.publishing import sync_readme

    readme = tmp_path / "README.md"
    shutil.copy(RESULTS.parents[1] / "README.md", readme)
    assert sync_readme(readme, RESULTS) == [], "the README is stale: run `make readme`"
    blocks = re.findall(r"<!-- ([\w-]+) -->", readme.read_text(encoding="utf-8"))
    assert {b for b in blocks if b.endswith("-standard")} == {p for p in PUBLISHED if p.endswith("-standard")}


def _strings(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from _strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)
    elif isinstance(v, str):
        yield v


def test_published_records_hold_no_path_of_the_machine_that_trained_them():
    """No absolute path anywhere in a published summary, and the files it names (curves, checkpoints)
    relative to its run folder, not to where it was trained from (``experiments/rl/<run>/curves.png``)."""
    import json

    bad = []
    for path in sorted(RESULTS.glob("**/runs/**/summary.json")):
        summary = json.loads(path.read_text(encoding="utf-8"))
        named = [summary.get("curves"), *(summary.get("checkpoints") or {}).values()]
        through_run = [v for v in named if isinstance(v, str) and path.parent.name in Path(v).parts]
        bad += [
            f"{path.relative_to(RESULTS)}: {v}"
            for v in [*_strings(summary), *through_run]
            if v.startswith("/") or v in through_run
        ]
    assert not bad, bad[:5]


MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|home|root)/")  # the training machines' folders
TEXT_RECORDS = ("*.json", "*.md", "*.yaml", "*.yml", "*.csv", "*.txt")


@pytest.mark.parametrize("folder", sorted(p.name for p in RESULTS.iterdir() if p.is_dir()))
def test_no_published_text_names_a_folder_of_the_machine(folder: str) -> None:
    """Every published text record (reports, experiment.json's commands, summaries, evaluations, configs)
    names paths relative to itself or the checkout, never the training machine's (/work/, /tmp/, ...):
    reslab.provenance.public_path."""
    bad = []
    for pattern in TEXT_RECORDS:
        for path in sorted((RESULTS / folder).rglob(pattern)):
            for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if MACHINE_PATH.search(line):
                    bad.append(f"{path.relative_to(RESULTS)}:{i}: {line.strip()[:120]}")
    assert not bad, bad[:5]


def test_a_published_path_is_relative_or_elided(tmp_path, monkeypatch) -> None:
    """public_path's rule, and publish() applying it to the invocations' commands and the source folder."""
    from reslab.provenance import public_path, public_text

    monkeypatch.chdir(tmp_path)
    assert public_path("experiments/x") == "experiments/x"  # relative: as typed
    assert public_path(tmp_path / "docs" / "results" / "x") == "docs/results/x"  # under the current directory
    assert public_path("/elsewhere/runs/degradation-standard/runs/plain20-s0") == (
        "…/degradation-standard/runs/plain20-s0"
    )
    assert public_path("/work/x") == "…/x"
    assert public_path("/a/b/checkpoints/best.safetensors", anchor="/a/b") == "checkpoints/best.safetensors"
    cmd = f"/w/src/reslab/__main__.py reproduce d --out /scratch/runs/d --publish {tmp_path}/docs/d"
    assert public_text(cmd) == "reslab reproduce d --out …/runs/d --publish docs/d"
    assert public_text(public_text(cmd)) == public_text(cmd)  # a published record stays as it is
    kept = "AMX-BF16 (/proc/cpuinfo; x), 1/2 at a time"  # the kernel's files, fractions: no folder
    assert public_text(kept) == kept
    # a run's records as copy_run_files publishes them: eval.json's checkpoint relative to its run folder,
    # config.yaml as trained (it is the run's identity a rerun compares)
    import json

    from reslab.experiments.publishing import copy_run_files

    run = tmp_path / "scratch" / "runs" / "sr-s0"
    run.mkdir(parents=True)
    (run / "eval.json").write_text(json.dumps({"checkpoint": f"{run}/checkpoints/best.safetensors"}))
    (run / "config.yaml").write_text(f"init_from: {tmp_path}/backbone\n")
    copy_run_files(run, tmp_path / "pub", ("eval.json", "config.yaml"))
    assert json.loads((tmp_path / "pub" / "eval.json").read_text()) == {
        "checkpoint": "checkpoints/best.safetensors"
    }
    assert (tmp_path / "pub" / "config.yaml").read_text() == (run / "config.yaml").read_text()


def test_a_published_summary_names_its_files_relative_to_its_run(tmp_path):
    import json

    from reslab.experiments.publishing import relative_summary

    run = tmp_path / "runs" / "resnet20-s0"
    raw = {"run_dir": str(run), "checkpoints": {"last": str(run / "checkpoints" / "last.safetensors")},
           "curves": str(run / "curves.png"), "steps": 5}  # fmt: skip
    got = json.loads(relative_summary(json.dumps(raw).encode(), run))
    assert got == {"run_dir": ".", "checkpoints": {"last": "checkpoints/last.safetensors"}, "curves": "curves.png",
                   "steps": 5}  # fmt: skip
    # trained from a relative --out (bench/rl_encoders.py: experiments/rl/<run>), or republished from a record
    for where in ("experiments/rl/resnet20-s0", "."):
        raw = {"run_dir": where, "checkpoints": {"last": "experiments/rl/resnet20-s0/checkpoints/last.safetensors"},
               "curves": "experiments/rl/resnet20-s0/curves.png"}  # fmt: skip
        got = json.loads(relative_summary(json.dumps(raw).encode(), Path("runs/rl/resnet20-s0")))
        assert got == {
            "run_dir": ".",
            "checkpoints": {"last": "checkpoints/last.safetensors"},
            "curves": "curves.png",
        }


def test_benchmarks_lists_every_published_runs_cost():
    """BENCHMARKS.md's run-cost table is bench/run_costs.py's over the committed runs (issue 30: the measured
    cost of each run on record): a run published without rerunning the script fails here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_costs", RESULTS.parents[1] / "bench" / "run_costs.py")
    costs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(costs)
    block = costs.BLOCK.search(costs.BENCHMARKS.read_text(encoding="utf-8"))
    assert block, "BENCHMARKS.md has its <!-- run-costs --> block"
    assert block.group(0) == f"{block.group(1)}{costs.table()}{block.group(2)}", (
        "run python bench/run_costs.py"
    )
    runs, aliases = costs.finished_runs()
    assert runs["resnet56"] and "resnet32A" in aliases["resnet32"]  # copies listed once, under one name
