"""`reslab reproduce` / `reslab plot`: plans, claims, figures and reports, resume/skip, concurrent runs.

End-to-end tests use the ``smoke`` budget on synthetic data (32x32 RGB, 1024 images: no download, fast);
one also runs on the real Fashion-MNIST when it is installed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from _import_graph import find_cycle, import_graph
from reslab.cli import main
from reslab.errors import ConfigError, ReslabError
from reslab.experiments import plan_experiment, redraw, run_experiment
from reslab.experiments.budgets import BUDGETS
from reslab.experiments.evidence import Claim, judge
from reslab.experiments.plan import load_plan, write_plan
from reslab.experiments.results import Group, RunResult
from reslab.experiments.specs import EXPERIMENTS, parse_depths, parse_seeds
from reslab.train import load_recipe
from reslab.train.recipe import config_to_yaml
from reslab.train.rundir import RunDir

EXPECTED_NETWORKS = {
    "degradation": {f"{f}{d}" for f in ("plain", "resnet") for d in (20, 32, 44, 56)},
    "depth": {f"resnet{d}" for d in (20, 32, 44, 56, 110)},
    "shortcuts": {"resnet32A", "resnet32B", "resnet32C", "plain32"},
    "highway": {f"{f}{d}" for f in ("plain", "resnet", "highway") for d in (20, 56)},
    "relatives": {"resnet56", "seresnet56", "preact56", "densenet_bc100"},
}


def _fmnist_available() -> bool:
    try:
        from reslab.data.datasets import find_dataset

        return find_dataset("fashion-mnist") is not None
    except Exception:
        return False


def claims_for(experiment: str, groups: list[Group]) -> list[Claim]:
    """The claims the report of ``experiment`` makes of ``groups``."""
    return judge(EXPERIMENTS[experiment].claims, groups)


# ------------------------------------------------------------------------------------------ plans


@pytest.mark.parametrize("name", sorted(EXPECTED_NETWORKS))
def test_plan_has_the_papers_networks(name: str, tmp_path: Path) -> None:
    plan = plan_experiment(name, budget="smoke", out=tmp_path)
    assert {r.name.rsplit("-s", 1)[0] for r in plan.runs} == EXPECTED_NETWORKS[name]
    # every run config is a valid engine config (milestones before the end, known keys)
    from reslab.train import load_recipe

    for budget in BUDGETS:
        plan = plan_experiment(name, budget=budget, out=tmp_path, seeds="2")
        nets = EXPECTED_NETWORKS[name]
        if budget in EXPERIMENTS[name].depths:  # a budget may default to fewer depths (quick degradation)
            keep = {f"{d}" for d in EXPERIMENTS[name].depths[budget]}
            nets = {n for n in nets if any(n.endswith(d) for d in keep)}
        assert len(plan.runs) == 2 * len(nets)
        iters = {plan.configs[r.name].get("iterations") for r in plan.runs}
        assert len(iters) == 1, "every network of an experiment gets the same budget"
        for r in plan.runs:
            cfg = load_recipe(plan.recipe, **plan.configs[r.name])
            assert cfg.model == r.model and cfg.seed == r.seed
    shortcut = plan_experiment("shortcuts", budget="smoke", out=tmp_path)
    kinds = {r.variant: (r.model, r.model_kwargs.get("shortcut")) for r in shortcut.runs}
    # Option A is resnet32's own shortcut: the run is the depth experiment's ResNet-32, reused from it.
    assert kinds == {
        "A": ("resnet32", None),
        "B": ("resnet32", "B"),
        "C": ("resnet32", "C"),
        "plain": ("plain32", None),
    }
    depth = plan_experiment("depth", budget="smoke", depths="32", out=tmp_path / "d")
    from reslab.experiments.reuse import resolved_config, same_training

    a = next(r for r in shortcut.runs if r.variant == "A")
    assert same_training(resolved_config(shortcut, a), resolved_config(depth, depth.runs[0]))


def test_plan_arguments() -> None:
    assert parse_seeds("3") == (0, 1, 2)
    assert parse_seeds("4,7") == (4, 7)
    assert parse_seeds(None) == (0,)
    assert parse_depths("56,20", "depth") == (20, 56)
    assert parse_depths(None, "degradation") == EXPERIMENTS["degradation"].default_depths
    assert parse_depths(None, "degradation", "quick") == (20, 56)
    assert parse_depths(None, "depth", "quick") == EXPERIMENTS["depth"].default_depths
    for bad in ("0", "x", "1,1"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match="6n\\+2"):
        parse_depths("21", "depth")
    with pytest.raises(ConfigError):
        plan_experiment("nope")
    with pytest.raises(ConfigError, match="unknown config key"):
        plan_experiment("depth", overrides={"no_such_key": 1})
    plan = plan_experiment("depth", dataset="cifar10", budget="paper")
    assert plan.out == Path("experiments/depth-cifar10-paper")
    assert plan.configs["resnet110-s0"]["dataset"] == "cifar10"
    assert "iterations" not in plan.configs["resnet110-s0"]  # the paper budget keeps the recipe's 64k


def test_quick_budget_fits_and_steps_down() -> None:
    for name in EXPERIMENTS:
        cfg = plan_experiment(name, budget="quick").configs
        c = next(iter(cfg.values()))
        assert 100 <= c["iterations"] <= 2000
        assert c["milestones"] == [c["iterations"] // 2, round(0.75 * c["iterations"])]
        assert c["batch_size"] == 128 and c["eval_subset"] == 1000


# ----------------------------------------------------------------------------------------- claims


def _three(x: float) -> list[float]:
    """Three seeds around ``x`` (the fewest a SUPPORTED verdict may rest on)."""
    return [x - 0.1, x, x + 0.1]


def _group(
    variant: str, depth: int, train: list[float], test: list[float], family: str | None = None
) -> Group:
    fam = family or ("plain" if variant == "plain" else "highway" if variant == "highway" else "resnet")
    runs = [
        RunResult(
            name=f"{variant}{depth}-s{i}",
            label=f"{variant}-{depth}",
            family=fam,
            variant=variant,
            depth=depth,
            seed=i,
            finished=True,
            steps=100,
            iterations=100,
            train_error=a,
            test_error=b,
            best_test_error=b,
            n_eval=10000,
            n_train=5000,
            eval_split="test",
            wall_s=1.0,
            params=None,
        )
        for i, (a, b) in enumerate(zip(train, test))
    ]
    return Group(f"{variant}-{depth}", fam, variant, depth, runs)


@pytest.mark.parametrize(
    ("hw56", "verdict", "says"),
    [
        (
            [14.0, 14.2],
            "supported",
            "+6.00 for highway nets (difference +7.00",
        ),  # highway degrades, ResNet not
        ([7.1, 7.3], "inconclusive", "difference +0.10"),  # both about as good: inside the margin
        ([4.0, 4.2], "not supported", "difference -3.00"),  # highway gains more
        ([], "inconclusive", "not measured yet: highway-56 has no finished evaluation."),
    ],
)
def test_the_depth_gain_claim_flips_at_its_margin(hw56: list[float], verdict: str, says: str) -> None:
    from reslab.experiments.claims import depth_gain_claim

    res = [_group("resnet", 20, [8.0, 8.2], [8.0, 8.0]), _group("resnet", 56, [7.0, 7.2], [7.0, 7.0])]
    hw = [_group("highway", 20, [8.0, 8.2], [8.0, 8.0]), _group("highway", 56, hw56, hw56)]
    c = depth_gain_claim(res, hw)
    assert c.verdict == verdict and says in c.sentence, c.sentence
    assert "nan" not in c.sentence + c.undecided
    assert bool(c.undecided) == (verdict == "inconclusive" and bool(hw56))


def test_runs_in_progress_and_runs_not_started_are_told_apart() -> None:
    """A seed added to a sweep (or left for later by --runs) has no numbers; a run stopped mid-way has its
    last evaluation's, which count nowhere until it finishes. The table and the claims say which, not
    "unfinished" for both."""
    import dataclasses

    res56 = _group("resnet", 56, [7.0, 7.2, 7.1], [7.0, 7.1, 7.2])
    res56.runs[1] = dataclasses.replace(res56.runs[1], finished=False)  # stopped mid-way: steps 100
    res56.runs[2] = dataclasses.replace(
        res56.runs[2], finished=False, steps=0, train_error=math.nan, test_error=math.nan
    )
    assert res56.open_runs() == "1 in progress, 1 not started"
    groups = [
        _group("plain", 20, [8.0, 8.2], [8.0, 8.1]),
        _group("plain", 56, [14.0, 14.2], [13.0, 13.1]),
        _group("resnet", 20, [7.5, 7.6], [7.3, 7.4]),
        res56,
    ]
    assert groups[0].open_runs() == ""
    plain, *resnet = claims_for("degradation", groups)
    assert "plain nets" in plain.claim  # judged from the plain nets alone, which are whole
    assert "unfinished" not in plain.sentence and "not started" not in plain.sentence, plain.sentence
    for c in resnet:  # every other claim involves ResNet-56
        assert c.sentence.endswith(
            "(1 run still training (resnet56-s1): not counted yet; "
            "1 run asked for (--seeds) not started yet (resnet56-s2): the numbers are of the others; "
            "the seed plan is in 'Planned seeds')"
        ), c.sentence
    res56.runs[1] = dataclasses.replace(res56.runs[1], finished=True)
    (_, c, *_) = claims_for("degradation", groups)
    assert "still training" not in c.sentence and "not started yet (resnet56-s2)" in c.sentence
    assert not any("not started" in c.sentence for c in claims_for("degradation", groups[:3]))
    # a claim names only its own networks' open runs: DenseNet not started leaves pre-act's claim whole
    dense = _group("densenet", 100, [math.nan], [math.nan])
    dense.runs[0] = dataclasses.replace(dense.runs[0], finished=False, steps=0)
    rel = [_group("resnet", 56, [7.0, 7.2], [7.0, 7.1]), _group("preact", 56, [7.1, 7.3], [7.1, 7.2]), dense]
    preact, densenet = claims_for("relatives", rel)
    assert "not started" not in preact.sentence, preact.sentence
    running = _group("densenet", 100, [9.3, 9.4], [11.1, 27.1])  # mid-way: last evaluations, far apart
    running.runs = [dataclasses.replace(r, finished=False) for r in running.runs]
    (_, densenet_running) = claims_for("relatives", [*rel[:2], running])
    assert densenet_running.verdict == "inconclusive" and "still training" in densenet_running.sentence
    assert running.values("test_error") == [] and math.isnan(running.mean("test_error"))  # progress only
    assert not densenet_running.undecided  # open runs, not the budget: no seed estimate yet
    assert densenet.sentence.endswith(
        "(1 run asked for (--seeds) not started yet (densenet100-s0): the numbers are of the others; "
        "the seed plan is in 'Planned seeds')"
    )


def test_claims_are_computed_from_the_numbers() -> None:
    good = [
        _group("plain", 20, _three(10.0), _three(12.0)),
        _group("plain", 56, _three(16.0), _three(18.0)),
        _group("resnet", 20, _three(8.0), _three(10.0)),
        _group("resnet", 56, _three(6.0), _three(8.5)),
    ]
    verdicts = {c.claim: c.verdict for c in claims_for("degradation", good)}
    assert set(verdicts.values()) == {"supported"}, verdicts
    # the same numbers from one seed each: the test points the claims' way, the rule withholds a verdict
    one = [
        _group(g.variant, g.depth, g.values("train_error")[1:2], g.values("test_error")[1:2]) for g in good
    ]
    withheld = claims_for("degradation", one)
    assert {c.verdict for c in withheld} == {"inconclusive"}
    assert all("fewer than 3 seeds" in c.sentence and c.undecided for c in withheld)
    bad = [
        _group("plain", 20, [16.0], [18.0]),
        _group("plain", 56, [10.0], [12.0]),
        _group("resnet", 20, [6.0], [8.0]),
        _group("resnet", 56, [9.0], [11.0]),
    ]
    claims = claims_for("degradation", bad)
    assert [c.verdict for c in claims[:3]] == ["not supported"] * 3
    assert "+3.00" in claims[1].sentence  # the evidence is the measured difference
    # within noise: inconclusive, not a verdict either way
    tie = [_group(v, 32, [5.0, 5.2, 5.1], [7.0, 7.4, 7.2]) for v in ("A", "B", "C")] + [
        _group("plain", 32, _three(9.0), _three(12.0))
    ]
    c = {c.claim[:5]: c.verdict for c in claims_for("shortcuts", tie)}
    assert c["Every"] == "supported" and c["C ≤ B"] == "inconclusive"
    # C clearly worse than B, A level with B: one reversed step contradicts the order, with that step's p
    reversed_c = [_group("A", 32, _three(5.0), [7.2, 7.3, 7.25]), _group("B", 32, _three(5.0), [7.2, 7.35, 7.28]),
                  _group("C", 32, _three(5.0), [7.8, 7.7, 7.9]), _group("plain", 32, _three(9.0), _three(12.0))]  # fmt: skip
    order = next(c for c in claims_for("shortcuts", reversed_c) if c.claim.startswith("C ≤ B"))
    assert order.verdict == "not supported" and order.p < 0.01 and "Significant alone" not in order.sentence
    # depth: mean ± std over seeds
    depth = [
        _group("resnet", d, [5.0] * 3, [e, e + 0.2, e + 0.1]) for d, e in ((20, 9.0), (56, 8.0), (110, 7.0))
    ]
    claim, step = claims_for("depth", depth)
    assert claim.verdict == "supported" and "(20 → 110; paper: 8.75% → 6.43%)" in claim.claim
    # the plan's ResNet-20 → ResNet-56 test (seedplan.depth_tests) is a claim of its own, in the same family
    assert (
        step.verdict == "supported" and "(20 → 56; paper: 8.75% → 6.97%)" in step.claim and step.family == 2
    )
    depth[1] = _group("resnet", 56, [5.0] * 3, [9.1, 8.9, 9.05])  # no gain from 20 to 56
    assert claims_for("depth", depth)[1].verdict == "inconclusive"


# --------------------------------------------------------------------------- figures from fake logs


def _fake_runs(plan, steps: int = 60) -> None:
    for i, r in enumerate(plan.runs):
        d = plan.run_dir(r)
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(config_to_yaml(load_recipe(plan.recipe, **plan.configs[r.name])))
        base = 5 + (r.depth / 10 if r.family == "plain" else 0) + 0.1 * i
        with open(d / "train_log.csv", "w") as f:
            f.write("step,epoch,lr,loss,error\n")
            for s in range(5, steps + 1, 5):
                f.write(f"{s},{s / 100},0.1,1.0,{base + 50 * math.exp(-s / 20):.3f}\n")
        with open(d / "metrics.csv", "w") as f:
            f.write("step,epoch,lr,train_loss,train_error,val_error,test_error,images_per_s,elapsed\n")
            for s in range(20, steps + 1, 20):
                e = base + 50 * math.exp(-s / 20)
                f.write(f"{s},{s / 100},0.1,1.0,{e:.3f},,{e + 2:.3f},100,{s / 10}\n")
        (d / "summary.json").write_text(json.dumps({"finished": True, "params": 1000, "device": "cpu"}))


def test_a_report_counts_every_finished_seed_of_its_networks_from_the_pool(tmp_path: Path) -> None:
    """Seeds 2-3 of plain-20/ResNet-20, trained by a sibling experiment with the same config, count in a
    two-seed report and are listed as the pool's; a run with another config, an unfinished one, or one of
    another resolved precision does not count."""
    from reslab.experiments.pooled import pooled_runs

    mine = plan_experiment("degradation", budget="quick", out=tmp_path / "mine", dataset="cifar10", seeds=2)
    other = plan_experiment("degradation", budget="quick", out=tmp_path / "other", dataset="cifar10", seeds=4)
    for plan in (mine, other):
        write_plan(plan, [{"wall_s": 1.0, "jobs": 1}])
        _fake_runs(plan)
    by_name = {r.name: other.run_dir(r) for r in other.runs}
    (by_name["plain56-s3"] / "summary.json").write_text(json.dumps({"finished": False}))  # unfinished
    bf16 = json.loads((by_name["resnet56-s3"] / "summary.json").read_text()) | {"precision": "bf16"}
    (by_name["resnet56-s3"] / "summary.json").write_text(json.dumps(bf16))  # another precision
    cfg = by_name["resnet20-s3"] / "config.yaml"
    changed = yaml.safe_load(cfg.read_text()) | {"weight_decay": 0.0123}
    cfg.write_text(yaml.safe_dump(changed))  # another config
    import shutil

    shutil.rmtree(mine.run_dir(next(r for r in mine.runs if r.name == "plain56-s1")))  # planned, not run here
    found = pooled_runs(mine, mine.out)
    pooled = {(r.name, r.source.split(" ")[0]) for r in found if r.finished}
    assert pooled == {
        ("plain20-s2", "other"), ("plain20-s3", "other"), ("resnet20-s2", "other"),
        ("plain56-s1", "other"), ("plain56-s2", "other"), ("resnet56-s2", "other"),
    }  # fmt: skip
    # the sibling's planned plain56-s3, unfinished there: one of the pool's planned seeds, not started here
    assert {(r.name, r.steps) for r in found if not r.finished} == {("plain56-s3", 0)}
    out = redraw(mine.out)
    counts = {g.label: len(g.runs) for g in out["groups"]}
    assert counts["plain-20"] == 4 and counts["ResNet-20"] == 3 and counts["ResNet-56"] == 3
    done = {g.label: sum(r.finished for r in g.runs) for g in out["groups"]}
    assert counts["plain-56"] == 4 and done["plain-56"] == 3  # s1 replaced, s3 planned by the sibling
    assert all(r.finished for g in out["groups"] if g.label != "plain-56" for r in g.runs)
    report = (mine.out / "report.md").read_text()
    assert "Trained elsewhere" in report and "from other: plain-20 s2 (git" in report
    assert "trained_by" in (mine.out / "results.csv").read_text().splitlines()[0]


def test_a_copied_run_is_credited_to_the_experiment_that_trained_it(tmp_path: Path) -> None:
    """A planned run an invocation copied from a sibling (its record: ``reused``) is listed as that
    sibling's in report.md and results.csv; one copied back and forth keeps the experiment that trained it
    and never copied it in (found as a defect: copied runs read as trained by every report holding them)."""
    import shutil

    from reslab.experiments.pooled import copied_runs

    plans = {}
    for name in ("trainer", "copier", "third"):
        plan = plan_experiment("degradation", budget="quick", out=tmp_path / name, dataset="cifar10", seeds=1)
        _fake_runs(plan)
        plans[name] = plan
    for i, run in enumerate(plans["trainer"].runs):  # each training its own fingerprint
        summary = plans["trainer"].run_dir(run) / "summary.json"
        summary.write_text(
            json.dumps(
                json.loads(summary.read_text()) | {"wall_time_s": 10.0 + i, "git_revision": "abc1234def"}
            )
        )
    copied = plans["trainer"].runs[0].name
    for name in ("copier", "third"):
        dest = plans[name].run_dir(plans[name].runs[0])
        shutil.rmtree(dest)
        shutil.copytree(plans["trainer"].run_dir(plans["trainer"].runs[0]), dest)
    write_plan(plans["trainer"], [{"started": "2026-01-01", "trained": [r.name for r in plans["trainer"].runs]},
                                  {"started": "2026-01-04", "reused": {copied: "third/runs/" + copied}}])  # fmt: skip
    write_plan(plans["copier"], [{"started": "2026-01-02", "reused": {copied: "trainer/runs/" + copied}}])
    write_plan(plans["third"], [{"started": "2026-01-03", "trained": [copied]},
                                {"started": "2026-01-03", "reused": {copied: "trainer/runs/" + copied}}])  # fmt: skip
    assert copied_runs(plans["copier"], plans["copier"].out) == {copied: "trainer (git abc1234)"}
    assert copied_runs(plans["third"], plans["third"].out) == {copied: "trainer (git abc1234)"}
    assert copied_runs(plans["trainer"], plans["trainer"].out) == {}  # its own, though copied back later
    redraw(plans["copier"].out)
    label = plans["copier"].runs[0].label
    assert f"from trainer: {label} s0 (git abc1234)" in (plans["copier"].out / "report.md").read_text()
    with open(plans["copier"].out / "results.csv", newline="") as f:
        rows = {row["run"]: row["trained_by"] for row in csv.DictReader(f)}
    assert rows[copied] == "trainer (git abc1234)" and rows[plans["copier"].runs[1].name] == "this experiment"


def test_a_not_started_run_reads_as_a_run_folder_with_no_files(tmp_path: Path) -> None:
    """``not_started`` (a seed another experiment plans and nobody finished) is what reading a run folder
    without files gives: no numbers, not finished, the spec's identity."""
    from reslab.experiments.results import not_started, read_run

    plan = plan_experiment("degradation", budget="quick", out=tmp_path / "p", dataset="cifar10", seeds=1)
    spec = plan.runs[0]
    made, read = dataclasses.asdict(not_started(spec)), dataclasses.asdict(read_run(tmp_path / "none", spec))
    assert made.keys() == read.keys()
    for key, value in made.items():
        same = value == read[key] or (
            isinstance(value, float) and math.isnan(value) and math.isnan(read[key])
        )
        assert same, key
    assert made["name"] == spec.name and not made["finished"] and math.isnan(made["test_error"])


def test_an_invocation_with_fewer_seeds_keeps_the_seeds_an_earlier_one_trained_here(tmp_path: Path) -> None:
    """The budget's default seeds after an invocation with more: the folder's seed 2 still counts (found
    as a defect: rerunning the published command without ``--seeds`` dropped it and flipped a verdict)."""
    from reslab.experiments.pooled import pooled_runs

    three = plan_experiment("degradation", budget="quick", out=tmp_path / "exp", dataset="cifar10", seeds=3)
    write_plan(three, [{"wall_s": 1.0, "jobs": 1}])
    _fake_runs(three)
    two = plan_experiment("degradation", budget="quick", out=tmp_path / "exp", dataset="cifar10", seeds=2)
    write_plan(two, [{"wall_s": 1.0, "jobs": 1}])
    assert {(r.name, r.source.split(" ")[0]) for r in pooled_runs(two, two.out)} == {
        (f"{net}-s2", "exp") for net in ("plain20", "plain56", "resnet20", "resnet56")
    }
    out = redraw(two.out)
    assert {len(g.runs) for g in out["groups"]} == {3}
    assert "earlier invocation of this one with more seeds" in (two.out / "report.md").read_text()


def test_a_planned_auto_meets_a_pooled_off_of_the_same_precision(tmp_path: Path) -> None:
    """A report planned when budgets left ``amp: auto`` (its runs computed in fp32) counts a sibling's
    ``amp: off`` run (fp32 too); it would not count it had its own runs computed in bf16."""
    from reslab.experiments.pooled import pooled_runs

    mine = plan_experiment(
        "degradation", budget="quick", out=tmp_path / "mine", dataset="cifar10", seeds=1, depths="20"
    )
    other = plan_experiment(
        "degradation", budget="quick", out=tmp_path / "other", dataset="cifar10", seeds=2, depths="20"
    )
    for plan in (mine, other):
        write_plan(plan, [{"wall_s": 1.0, "jobs": 1}])
        _fake_runs(plan)
    for (
        name
    ) in mine.configs:  # the older plan and its runs: amp auto (fp32 here: the summaries say no precision)
        mine.configs[name]["amp"] = "auto"
        cfg = mine.run_dir(next(r for r in mine.runs if r.name == name)) / "config.yaml"
        cfg.write_text(yaml.safe_dump(yaml.safe_load(cfg.read_text()) | {"amp": "auto"}))
    write_plan(mine, [{"wall_s": 1.0, "jobs": 1}])
    mine = load_plan(mine.out)
    assert {r.name for r in pooled_runs(mine, mine.out)} == {"plain20-s1", "resnet20-s1"}
    for r in mine.runs:  # now the plan's own runs computed in bf16: the fp32 runs are another training
        summary = mine.run_dir(r) / "summary.json"
        summary.write_text(json.dumps(json.loads(summary.read_text()) | {"precision": "bf16"}))
    assert pooled_runs(mine, mine.out) == []


@pytest.mark.parametrize("name", sorted(EXPECTED_NETWORKS))
def test_report_and_figure_from_csv_logs(name: str, tmp_path: Path) -> None:
    depths = EXPERIMENTS[name].default_depths  # all of them, not the quick budget's default
    plan = plan_experiment(name, budget="quick", out=tmp_path / name, dataset="cifar10", depths=depths)
    write_plan(plan, [{"wall_s": 12.0, "jobs": 1}])
    _fake_runs(plan)
    out = redraw(plan.out)
    _check_outputs(plan.out, name, expect_paper=True)
    assert out["claims"]
    # `reslab plot` on the experiment and on one run directory
    assert main(["plot", str(plan.out)]) == 0
    run_dir = plan.run_dir(plan.runs[0])
    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "curves.png").stat().st_size > 1000


def test_an_experiment_is_one_record(tmp_path: Path, monkeypatch, capsys) -> None:
    """Adding an experiment is adding its record: the planner, the report, its table and figure, the
    claims and the command line take everything from it."""
    from reslab.experiments import paper, plotting
    from reslab.experiments.specs import Experiment, Network

    def rules(groups: list[Group]) -> list[Claim]:
        return [Claim("Toy claim", "inconclusive", f"{len(groups)} networks.")]

    toy = Experiment(
        "toy",
        "A toy experiment",
        "Nobody 2026",
        "a plain and a residual net",
        networks=(Network("plain", "plain-{d}", "plain{d}"), Network("resnet", "ResNet-{d}", "resnet{d}")),
        default_depths=(20,),
        claims=rules,
        plot=plotting.plot_family_panels,
        paper=paper.PaperColumn(
            "paper: toy %", "Nobody 2026, Table 1", {"resnet": {20: "1.00"}}, "Toy numbers"
        ),
        table_order=("resnet", "plain"),
        iterations={"quick": 40},
    )
    monkeypatch.setitem(EXPERIMENTS, "toy", toy)
    plan = plan_experiment("toy", budget="quick", out=tmp_path / "toy")
    assert [r.name for r in plan.runs] == ["plain20-s0", "resnet20-s0"]
    assert plan.configs["resnet20-s0"]["iterations"] == 40
    write_plan(plan, [{"wall_s": 1.0}])
    _fake_runs(plan)
    redraw(plan.out)
    report = (plan.out / "report.md").read_text()
    assert report.startswith("# A toy experiment\n") and "![toy](toy.png)" in report
    rows = [line for line in report.splitlines() if line.startswith(("| ResNet-20 ", "| plain-20 "))]
    assert rows[0].startswith("| ResNet-20 ") and rows[0].endswith(" | 1.00 |") and rows[1].endswith(" | — |")
    assert "Paper numbers: Nobody 2026, Table 1." in report
    assert "Toy numbers; on fashion-mnist at the quick budget compare the ordering" in report
    assert "- **Toy claim** — INCONCLUSIVE: 2 networks." in report
    assert (plan.out / "toy.png").read_bytes()[:4] == b"\x89PNG"
    args = ["reproduce", "toy", "--budget", "smoke", "--dataset", "synthetic", "--out", str(tmp_path / "cli")]
    assert main([*args, "--dry-run"]) == 0
    assert re.search(r"^  resnet20-s0 +resnet20 .* new$", capsys.readouterr().out, re.M)


def _check_outputs(out: Path, name: str, expect_paper: bool = False) -> list[dict[str, str]]:
    fig = out / f"{name}.png"
    assert fig.is_file() and fig.read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert f"![{name}]({name}.png)" in report
    for section in ("## What was run", "## Results", "## Claims"):
        assert section in report
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    nets = {r["run"].rsplit("-s", 1)[0] for r in rows}
    assert nets == EXPECTED_NETWORKS[name]
    results = report.split("## Results", 1)[1].split("\n## ", 1)[0]  # the results table, not the seed plan
    table = [
        line for line in results.splitlines() if line.startswith("| ") and not line.startswith("| network")
    ]
    assert len(table) == len(nets), "one table row per network"
    for r in rows:
        assert math.isfinite(float(r["train_error"])) and math.isfinite(float(r["test_error"]))
        assert 0 <= float(r["test_error"]) <= 100
    verdicts = re.findall(r"— (SUPPORTED|NOT SUPPORTED|PARTLY SUPPORTED|INCONCLUSIVE):", report)
    assert verdicts, "one computed verdict per claim"
    if expect_paper and name in ("depth", "degradation"):
        assert "8.75" in report and "6.97" in report  # Table 6 beside ours on CIFAR-10
    if name == "shortcuts":
        assert "25.03" in report and "24.19" in report
    return rows


# ------------------------------------------------------------------------------ end to end (smoke)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_NETWORKS))
def test_reproduce_smoke_end_to_end(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / name
    rc = main(
        ["reproduce", name, "--budget", "smoke", "--dataset", "synthetic", "--out", str(out), "--quiet"]
    )
    assert rc == 0
    rows = _check_outputs(out, name)
    assert all(r["finished"] == "1" for r in rows)
    stdout = capsys.readouterr().out
    assert f"report: {out / 'report.md'}" in stdout
    _check_smoke_runs(out, rows, stdout)


def _check_smoke_runs(out: Path, rows: list[dict[str, str]], stdout: str) -> None:
    """What a finished sweep promises beyond its tables: every planned run trained to its last step, with
    the registry's parameter count, a checkpoint that names its model, and curves; every claim printed
    with the verdict the report gives it."""
    from reslab.models import count_params_and_macs
    from reslab.models.weights import read_metadata

    plan = json.loads((out / "experiment.json").read_text())
    planned = {r["name"]: r for r in plan["runs"]}
    assert sorted(r["run"] for r in rows) == sorted(planned)
    assert sorted(plan["sessions"][-1]["trained"]) == sorted(planned)
    assert f"{len(planned)} runs, {len(planned)} finished" in (out / "report.md").read_text()
    for r in rows:
        spec, run_dir = planned[r["run"]], out / "runs" / r["run"]
        assert int(r["steps"]) == plan["configs"][r["run"]]["iterations"]
        assert int(r["params"]) == count_params_and_macs(spec["model"], **spec["model_kwargs"])[0]
        meta = read_metadata(run_dir)
        assert meta["model"] == spec["model"] and spec["model_kwargs"].items() <= meta["model_kwargs"].items()
        assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    claims = re.findall(r"^  \[([a-z ]+)\] (.+)$", stdout, re.MULTILINE)
    assert claims and len(claims) == len(re.findall(r"^- \*\*.+\*\* — [A-Z ]+:", report, re.MULTILINE))
    for verdict, claim in claims:
        assert f"- **{claim}** — {verdict.upper()}:" in report


@pytest.mark.slow
@pytest.mark.skipif(not _fmnist_available(), reason="Fashion-MNIST not installed (make data)")
def test_reproduce_smoke_on_fashion_mnist(tmp_path: Path) -> None:
    plan = plan_experiment("degradation", budget="smoke", depths="20,56", out=tmp_path / "fm")
    result = run_experiment(plan, progress=False)
    assert len(result["trained"]) == 4
    report = (plan.out / "report.md").read_text()
    assert "fashion-mnist" in report and "compare the ordering" in report


def _stop_at_evaluation(monkeypatch, n: int, check: Callable[[], None] | None = None) -> None:
    """Make the process's ``n``-th evaluation raise KeyboardInterrupt, as Ctrl-C would, after running
    ``check``. In a smoke sweep of plain20 then resnet20 (evaluations at steps 2 and 4), n = 4 stops
    resnet20 after its step-2 checkpoint. ``monkeypatch.undo()`` restores the evaluation."""
    import reslab.tasks.classification as task

    real_eval = task.evaluate
    calls = {"n": 0}

    def flaky_eval(*a, **kw):
        calls["n"] += 1
        if calls["n"] == n:
            if check is not None:
                check()
            raise KeyboardInterrupt
        return real_eval(*a, **kw)

    monkeypatch.setattr(task, "evaluate", flaky_eval)


def test_runs_trains_only_the_named_runs_and_the_report_covers_the_finished(tmp_path: Path, capsys) -> None:
    # A sitting too short for the whole sweep trains the runs that fit (e.g. the ones an analysis needs);
    # the others are left for a later invocation, which trains only them.
    out = tmp_path / "e"
    args = ["reproduce", "degradation", "--budget", "smoke", "--dataset", "synthetic", "--depths", "20"]
    args += ["--out", str(out)]
    assert main([*args, "--runs", "resnet20-s0", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert re.search(r"plain20-s0 .* new \(left out: not asked for", dry), dry
    assert re.search(r"resnet20-s0 .* new$", dry, re.M), dry
    assert main([*args, "--runs", "resnet20-s7"]) == 2  # not a run of this plan: one line, nothing made
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "reslab: error: degradation has no run 'resnet20-s7'; its runs: plain20-s0, resnet20-s0"
    ]
    assert not out.exists()

    plan = plan_experiment("degradation", budget="smoke", dataset="synthetic", depths="20", out=out)
    lines: list[str] = []
    first = run_experiment(plan, progress=False, only=["resnet20-s0"], log=lines.append)
    assert first["trained"] == ["resnet20-s0"] and first["left_out"] == ["plain20-s0"], first
    assert "0 to continue, 1 to train, 1 left for another invocation" in lines[0], lines
    assert RunDir.status(plan.run_dir(plan.runs[0])) == "missing"
    assert "2 runs, 1 finished" in (out / "report.md").read_text()
    second = run_experiment(plan, progress=False)
    assert second["trained"] == ["plain20-s0"] and second["skipped"] == ["resnet20-s0"], second
    assert "2 runs, 2 finished" in (out / "report.md").read_text()


def test_a_narrower_invocation_keeps_the_folders_recorded_seeds_and_depths(tmp_path: Path, capsys) -> None:
    """An invocation with fewer --seeds or --depths than the folder's record (the budget's defaults over a
    published folder) plans the union and trains only what it asked for: its report never drops a network
    or a seed (found as a defect: it rewrote a six-network published report over two networks)."""
    from reslab.experiments.plan import widen_plan

    out = tmp_path / "e"
    wide = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20,56", seeds=2, out=out
    )
    write_plan(wide, [{"wall_s": 1.0, "jobs": 1}])
    narrow = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", seeds=1, out=out
    )
    plan, asked = widen_plan(narrow, [out, None])
    assert plan.seeds == (0, 1) and plan.depths == (20, 56) and plan.configs == wide.configs
    assert asked == ["plain20-s0", "resnet20-s0"]
    other = plan_experiment("degradation", budget="quick", dataset="synthetic", depths="20", seeds=1, out=out)
    assert widen_plan(other, [out])[0] is other  # another budget's record is another experiment

    args = ["reproduce", "degradation", "--budget", "smoke", "--dataset", "synthetic", "--depths", "20"]
    assert main([*args, "--seeds", "1", "--out", str(out), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert re.search(r"resnet20-s0 .* new$", dry, re.M), dry
    for name in ("resnet20-s1", "plain56-s0", "resnet56-s1"):
        assert re.search(rf"{name} .* new \(left out: not asked for", dry), dry


@pytest.mark.slow
def test_rerun_skips_finished_and_continues_interrupted(tmp_path: Path, monkeypatch) -> None:
    plan = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", out=tmp_path / "e"
    )
    first, second = plan.runs  # plain20, resnet20

    def record_holds_the_finished_run() -> None:
        # Were the process killed here, the record would already hold the finished run and its time.
        now = json.loads((plan.out / "experiment.json").read_text())["sessions"][-1]
        assert now["status"] == "running" and now["trained"] == [first.name] and now["wall_s"] > 0

    _stop_at_evaluation(monkeypatch, 4, record_holds_the_finished_run)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(plan, progress=False)
    monkeypatch.undo()
    stopped = json.loads((plan.out / "experiment.json").read_text())["sessions"][-1]
    assert stopped["status"] == "interrupted" and stopped["trained"] == [first.name], stopped
    assert RunDir.status(plan.run_dir(first)) == "finished"
    assert RunDir.status(plan.run_dir(second)) == "unfinished"
    row2 = (plan.run_dir(second) / "metrics.csv").read_text().splitlines()[1]
    done_mtime = (plan.run_dir(first) / "summary.json").stat().st_mtime_ns

    result = run_experiment(plan, progress=False)
    assert result["skipped"] == [first.name] and result["resumed"] == [second.name]
    lines = (plan.run_dir(second) / "metrics.csv").read_text().splitlines()
    assert lines[1] == row2, "continued from its step-2 checkpoint, not restarted"
    assert [line.split(",")[0] for line in lines[1:]] == ["2", "4"]
    assert (plan.run_dir(first) / "summary.json").stat().st_mtime_ns == done_mtime
    _check_outputs_partial = (plan.out / "report.md").read_text()
    assert "2 runs, 2 finished" in _check_outputs_partial

    # Once everything is finished a rerun trains nothing and only redraws.
    mtimes = {r.name: (plan.run_dir(r) / "summary.json").stat().st_mtime_ns for r in plan.runs}
    result = run_experiment(plan, progress=False)
    assert result["trained"] == [] and sorted(result["skipped"]) == sorted(mtimes)
    assert mtimes == {r.name: (plan.run_dir(r) / "summary.json").stat().st_mtime_ns for r in plan.runs}
    sessions = json.loads((plan.out / "experiment.json").read_text())["sessions"]
    assert len(sessions) == 3 and sessions[-1]["trained"] == []

    # A different config into the same folder is refused, naming the key.
    other = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", out=plan.out, overrides={"lr": 0.05}
    )
    with pytest.raises(ReslabError, match="lr"):
        run_experiment(other, progress=False)


@pytest.mark.slow
def test_concurrent_workers(tmp_path: Path) -> None:
    plan = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", out=tmp_path / "j"
    )
    pub = tmp_path / "docs" / "degradation-smoke"
    result = run_experiment(plan, jobs=2, progress=False, publish=pub)
    assert sorted(result["trained"]) == sorted(r.name for r in plan.runs)
    for r in plan.runs:  # published as they finished, curves and all, without checkpoints
        assert (pub / "runs" / r.name / "metrics.csv").read_text() == (
            plan.run_dir(r) / "metrics.csv"
        ).read_text()
    assert (pub / "report.md").is_file() and not list(pub.rglob("*.safetensors"))
    for r in plan.runs:
        assert RunDir.status(plan.run_dir(r)) == "finished"
        assert (plan.out / "logs" / f"{r.name}.log").is_file()
    sessions = json.loads((plan.out / "experiment.json").read_text())["sessions"]
    assert sessions[-1]["jobs"] == 2
    _check = (plan.out / "report.md").read_text()
    assert "(2 at a time)" in _check


def test_wall_time_line_names_unfinished_invocations() -> None:
    from reslab.experiments.session import wall_time_line

    done = {"status": "finished", "wall_s": 3600.0, "jobs": 1}
    assert wall_time_line([], [done]) == (
        "- Wall time: 1h00m00s over 1 invocation(s) (1 at a time); the runs' own training time adds up to 0m00s."
    )
    killed = {"status": "running", "wall_s": 600.0}  # killed after one run finished
    line = wall_time_line([], [done, killed])
    assert "1h10m00s over 2 invocation(s)" in line and "1 of them unfinished" in line
    assert "finished none" not in line
    line = wall_time_line([], [done, killed, {"status": "running"}])  # killed before any run finished
    assert "2 of them unfinished" in line and "1 finished none and count 0" in line


# ------------------------------------------------------------------------------ seed-aware statistics


def test_student_t_tail_matches_known_values() -> None:
    from reslab.analysis.stats import t_ppf2, t_sf2

    # Two-sided 5% critical values of Student's t (any table): df 1, 2, 4, 10, 30.
    for df, t in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)):
        assert t_sf2(t, df) == pytest.approx(0.05, abs=2e-4)
        assert t_ppf2(0.05, df) == pytest.approx(t, abs=2e-3)
    assert t_sf2(0.0, 3) == pytest.approx(1.0)
    assert t_sf2(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| > 1) = 1/2
    assert t_sf2(1.959964, 1e7) == pytest.approx(0.05, abs=1e-5)  # the normal limit
    scipy_stats = pytest.importorskip("scipy.stats")
    for t, df in ((0.3, 2.5), (5.0, 3.3), (40.0, 7.0), (1.7, 123.4)):
        assert t_sf2(t, df) == pytest.approx(2 * scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-15)


def test_welch_matches_scipy_and_decides_only_beyond_noise() -> None:
    from reslab.analysis.stats import compare, planned_seeds, welch

    a, b = [7.53, 6.96, 7.20], [7.17, 7.08, 7.50]  # ResNet-20 / -56 at 5 epochs: within noise
    w = welch(a, b)
    scipy_stats = pytest.importorskip("scipy.stats")
    ref = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert w.t == pytest.approx(ref.statistic) and w.p == pytest.approx(ref.pvalue)
    c = compare(a, b, math.nan, math.nan)
    assert c.test == "welch" and not c.significant and c.sign == 0 and c.ranges_overlap
    assert c.seeds_needed is None, "a 0.02-point difference is beyond any practical number of seeds"
    mid = compare([7.53, 6.96, 7.20], [7.0, 6.8, 6.9], math.nan, math.nan)
    assert not mid.significant and mid.seeds_needed is not None and mid.seeds_needed > 3
    far = compare([7.8, 7.9, 8.1], [14.0, 14.1, 14.4], math.nan, math.nan)  # plain-20 vs plain-56
    assert far.sign == 1 and far.p < 0.001 and far.ranges_overlap is False
    # more seeds resolve a smaller difference; a zero difference never
    assert planned_seeds(0.2, 0.3) > planned_seeds(0.5, 0.3) >= 2
    assert planned_seeds(0.0, 0.3) is None
    # one run each: the binomial margin, with its 0.5-point floor
    one = compare([7.0], [7.4], 0.1, 0.1)
    assert one.test == "binomial" and one.margin == 0.5 and not one.significant


def test_planned_seeds_give_80_percent_power_by_the_noncentral_t() -> None:
    """The seeds planned for an effect give >= 80% power at 5% (two-sided two-sample t-test), one fewer
    gives less: checked against the power computed here from SciPy's noncentral t, not statsmodels."""
    from scipy import stats as st

    from reslab.analysis.stats import planned_seeds

    def power(n: int, d: float) -> float:
        df, nc = 2 * n - 2, d * math.sqrt(n / 2)
        crit = st.t.isf(0.025, df)
        return st.nct.sf(crit, df, nc) + st.nct.cdf(-crit, df, nc)

    assert planned_seeds(1.0, 1.0) == 17  # Cohen's d = 1: the textbook 17 per group
    for effect, sd in ((1.0, 1.0), (0.3, 0.15), (0.17, 0.13), (2.0, 0.5)):
        n = planned_seeds(effect, sd)
        assert power(n, effect / sd) >= 0.8 and (n == 2 or power(n - 1, effect / sd) < 0.8), (effect, sd, n)
    assert planned_seeds(0.01, 1.0) is None  # beyond any practical number of seeds
    assert planned_seeds(0.0005, 0.3) is None  # statsmodels' root search gives up: no number, no error


def test_holm_adjusts_a_family_and_skips_claims_without_a_p_value() -> None:
    from reslab.analysis.stats import holm

    # Holm 1979, step-down: sorted 0.005 x 4, 0.01 x 3, 0.03 x 2 (0.06), 0.04 x 1 -> max so far 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = holm([0.01, math.nan, 0.04])
    assert got[0] == pytest.approx(0.02) and math.isnan(got[1]) and got[2] == pytest.approx(0.04)


def test_welch_contrast_is_a_difference_of_differences_with_satterthwaite_df() -> None:
    from scipy import stats as st

    from reslab.analysis.stats import welch_contrast

    g = [[7.1, 7.3, 7.0], [6.9, 7.0, 7.2], [8.0, 8.3, 8.1], [9.0, 9.4, 9.1]]
    w = welch_contrast(g, (-1, 1, 1, -1))  # (b - a) - (d - c): the second pair gains more
    v = [st.tstd(x) ** 2 / 3 for x in g]
    est = (sum(g[1]) - sum(g[0]) + sum(g[2]) - sum(g[3])) / 3
    df = sum(v) ** 2 / sum(x * x / 2 for x in v)
    assert w.t == pytest.approx(est / math.sqrt(sum(v))) and w.df == pytest.approx(df)
    assert w.p == pytest.approx(2 * st.t.sf(abs(w.t), df)) and w.p < 0.05
    # two groups, weights (-1, 1): Welch's two-sample test itself
    a, b = g[0], g[2]
    assert welch_contrast([a, b], (-1, 1)).p == pytest.approx(st.ttest_ind(b, a, equal_var=False).pvalue)


def test_claims_flip_with_the_seed_spread() -> None:
    """The same mean difference is a claim with tight seeds and "inconclusive" with loose ones."""
    tight = [
        _group("resnet", 20, [8.0, 8.1, 7.9], [9.0, 9.1, 8.9]),
        _group("resnet", 56, [7.0, 7.1, 6.9], [8.0, 8.1, 7.9]),
    ]
    loose = [
        _group("resnet", 20, [8.0, 9.5, 6.5], [9.0, 10.5, 7.5]),
        _group("resnet", 56, [7.0, 8.5, 5.5], [8.0, 9.5, 6.5]),
    ]
    (ct,) = claims_for("depth", tight)
    (cl,) = claims_for("depth", loose)
    assert ct.verdict == "supported" and "Welch" in ct.sentence and not ct.undecided
    assert "(20 → 56; paper: 8.75% → 6.97%)" in ct.claim  # the depths compared, not 110
    assert cl.verdict == "inconclusive" and "seeds per network" in cl.undecided


def test_report_states_spread_test_and_what_is_undecided(tmp_path: Path) -> None:
    plan = plan_experiment("degradation", budget="quick", seeds=3, out=tmp_path / "d", dataset="cifar10")
    # Three invocations on two machines; the first predates recording the CPU model.
    sessions = [{"host": "box", "cpus": 2}, {"host": "box", "cpus": 2, "cpu_model": "AMD EPYC"}]
    sessions.append({"host": "gpu1", "cpus": 16, "cpu_model": "Intel Xeon"})
    sessions = [{"wall_s": 60.0, "jobs": 1, **s} for s in sessions]
    # a report rewritten for the pool's new runs (no machine: not an invocation), one that did not record it
    sessions += [{"command": "report rewritten", "trained": [], "looks": [{"claim": "x", "seeds": [1]}]},
                 {"wall_s": 1.0, "trained": ["plain20-s0"]}]  # fmt: skip
    write_plan(plan, sessions)
    _fake_runs(plan)
    # one machine's device as recorded before and after the "1 thread" grammar fix: named once
    for i, r in enumerate(plan.runs):
        dev = "cpu (x86_64, 1 threads)" if i % 2 else "cpu (x86_64, 1 thread)"
        (plan.run_dir(r) / "summary.json").write_text(json.dumps({"finished": True, "device": dev}))
    redraw(plan.out)
    report = (plan.out / "report.md").read_text()
    assert (
        "- Machine: box (2 CPUs, AMD EPYC), gpu1 (16 CPUs, Intel Xeon), host not recorded (CPUs not recorded); "
        "device" in report
    ), report
    assert "?" not in report.split("- Machine:")[1].split("\n")[0] and "over 4 invocation(s)" in report
    assert "; device cpu (x86_64, 1 thread); software" in report, report
    assert "test error range %" in report and "Welch's t-test" in report
    assert "## What this budget cannot decide" in report
    assert "reslab reproduce degradation --dataset cifar10 --budget quick --seeds 3" in report
    # the lr drops of the step schedule are marked in the figure and said in the report
    assert "lr" in report and "divided by 10" in report


def test_a_header_compares_the_budget_with_its_references_schedule() -> None:
    """An ImageNet reference (Table 3) is not a CIFAR schedule: the header says what it compares with."""
    from reslab.experiments.paper import against_reference

    shortcuts = against_reference(EXPERIMENTS["shortcuts"].paper, "fashion-mnist", 2145, "fashion_mnist")
    assert "not the reference's ImageNet" in shortcuts and "CIFAR-10 (the paper's Sec" not in shortcuts
    assert (
        "an ImageNet experiment, so the budget is compared against He et al.'s 64,000-iteration" in shortcuts
    )
    assert "3.4% of it" in shortcuts
    relatives = against_reference(EXPERIMENTS["relatives"].paper, "fashion-mnist", 2145, "fashion_mnist")
    assert "3.4% of He et al.'s 64,000" in relatives and "0.9% of DenseNet-BC's 300 epochs" in relatives
    depth = against_reference(EXPERIMENTS["depth"].paper, "cifar10", 2145, "cifar_paper")
    assert depth.startswith("Data set: cifar10, the reference's.") and "none (it is the paper's" in depth


def test_the_highway_rows_show_table_6s_highway_numbers_with_their_depths() -> None:
    """He et al.'s Table 6 quotes highway networks at 19 and 32 layers (7.54%, 8.80%): the highway rows show
    them with their depth (the issue found "—" there); the ResNet rows keep Table 6's ResNets."""
    paper = EXPERIMENTS["highway"].paper
    highway20, highway56 = _group("highway", 20, [7.5], [7.5]), _group("highway", 56, [9.0], [9.0])
    assert paper.cell(highway20).startswith("7.54 (19 layers") and paper.cell(highway56).startswith(
        "8.80 (32 layers"
    )
    assert (
        paper.cell(_group("resnet", 56, [7.0], [7.0])) == "6.97"
        and paper.cell(_group("plain", 20, [8.0], [8.0])) == "—"
    )


def test_the_looks_header_names_the_earliest_look_and_the_levels_used() -> None:
    from reslab.experiments.evidence import Claim
    from reslab.experiments.looks import hold_to_looks, looks_section

    sessions = [
        {"started": f"2026-11-{d}T00:00:00+00:00", "looks": [{"claim": "c", "seeds": [n, n], "p": 0.01, "p_holm": 0.01}]}
        for d, n in ((30, 3), (29, 4), (30, 2))  # 4, then 2 seeds: a look that saw part of the pool counts
    ]  # fmt: skip
    claim = Claim("c", "supported", "s.", p=0.02, p_holm=0.02)  # above 0.0182: held back
    claim.groups = []
    hold_to_looks([claim], sessions)  # the data now (no groups: 0 seeds) is a fourth look
    text = "\n".join(looks_section([claim], sessions))
    assert claim.looks == 4 and "0.05, 0.0294, 0.0221, 0.0182 for 1-4 looks" in text
    assert "0.0158" not in text and "The earliest look on record is of 2026-11-29" in text
    assert claim.verdict == "inconclusive" and "Pocock's level for its 4 looks" in claim.undecided


# ------------------------------------------------------------------------------ committed results


def test_publish_then_a_fresh_machine_continues(tmp_path: Path) -> None:
    from reslab.experiments import publish

    plan = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", seeds=2, out=tmp_path / "a"
    )
    write_plan(plan, [{"started": "2026-01-01T00:00:00+00:00", "host": "a", "wall_s": 5.0}])
    _fake_runs(plan)
    (plan.run_dir(plan.runs[0]) / "checkpoints").mkdir()
    (plan.run_dir(plan.runs[0]) / "checkpoints" / "last.safetensors").write_bytes(b"x" * 100)
    dest = tmp_path / "docs" / "degradation-smoke"
    publish(plan.out, dest)
    for r in plan.runs:
        for f in ("config.yaml", "summary.json", "metrics.csv", "train_log.csv"):
            assert (dest / "runs" / r.name / f).is_file()
    assert not list(dest.rglob("*.safetensors")), "no checkpoint is committed"
    report = (dest / "report.md").read_text()
    # the machine's path elided, as every published record holds it (reslab.provenance.public_path)
    from reslab.provenance import public_path

    assert f"--publish {public_path(dest)}\n" in report and public_path(dest).startswith("…/")
    assert str(tmp_path) not in report and str(tmp_path) not in (dest / "experiment.json").read_text()
    assert "4 runs, 4 finished" in report
    assert (dest / "degradation.png").is_file()

    # A fresh machine: an empty experiment folder, the committed results -> nothing to train.
    fresh = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", seeds=2, out=tmp_path / "b"
    )
    from reslab.experiments import run_states

    assert set(run_states(fresh, dest).values()) == {"published"} and set(run_states(fresh).values()) == {
        "missing"
    }
    result = run_experiment(fresh, progress=False, publish=dest)
    assert result["trained"] == [] and sorted(result["published"]) == sorted(r.name for r in plan.runs)
    sessions = json.loads((dest / "experiment.json").read_text())["sessions"]
    assert {s.get("host") for s in sessions} >= {"a"} and len(sessions) == 2, "sessions of both machines"

    # A committed run with another config is not silently reused.
    other = plan_experiment(
        "degradation",
        budget="smoke",
        dataset="synthetic",
        depths="20",
        seeds=2,
        out=tmp_path / "c",
        overrides={"lr": 0.05},
    )
    cfg = dest / "runs" / plan.runs[0].name / "config.yaml"
    cfg.write_text(cfg.read_text() + "lr: 0.1\n")
    with pytest.raises(ConfigError, match="lr"):
        run_experiment(other, progress=False, publish=dest)


def test_experiments_package_has_no_import_cycle() -> None:
    """Dependencies point one way, lazy imports included (STYLE.md habit 14)."""
    graph = import_graph("reslab.experiments")
    assert find_cycle(graph) is None, find_cycle(graph)
    from reslab.config import MACHINE_KEYS
    from reslab.experiments import plan, runner

    assert not hasattr(runner, "_MACHINE_KEYS")
    # amp changes the arithmetic: a stored run with another amp is a mismatch, a thread count is not
    assert plan.config_mismatch({"amp": "bf16", "threads": 2}, {"amp": "off", "threads": 1}) == (
        "amp",
        "bf16",
        "off",
    )
    assert plan.config_mismatch({"threads": 2}, {"threads": 1}) is None and "threads" in MACHINE_KEYS


def test_standard_budget_defaults_keep_the_running_sweeps_configs() -> None:
    """The standard degradation sweep started from this plan: defaults may be added, configs not changed
    (a rerun of the same command must recognise its finished runs)."""
    plan = plan_experiment("degradation", budget="standard", overrides={"threads": 1})
    assert plan.seeds == (0, 1, 2) and plan.depths == (20, 56) and plan.recipe == "fashion_mnist"
    assert [r.name for r in plan.runs] == [
        f"{m}-s{s}" for m in ("plain20", "resnet20", "plain56", "resnet56") for s in range(3)
    ]
    assert plan.configs["plain56-s0"] == {
        "dataset": "fashion-mnist",
        "epochs": 5,
        "tensorboard": False,
        "model": "plain56",
        "model_kwargs": {},
        "seed": 0,
        "threads": 1,
        # pinned (issue 32): the finished runs' stored amp: auto reads as the fp32 they recorded
        # (plan.stored_run_config; tests/test_precision.py), so they are still recognised
        "amp": "off",
    }
    assert plan_experiment("depth", budget="standard").seeds == (0, 1, 2)
    assert plan_experiment("depth", budget="quick").seeds == (0,)


def test_a_network_not_measured_yet_is_not_a_limit_of_the_budget() -> None:
    groups = [
        _group("resnet", 20, [8.0, 8.1, 7.9], [9.0, 9.1, 8.9]),
        _group("resnet", 56, [math.nan], [math.nan]),
    ]
    (c,) = claims_for("depth", groups)
    assert c.verdict == "inconclusive" and "not measured yet" in c.sentence and c.undecided == ""
    assert "nan" not in c.sentence


def test_relatives_claims_compare_each_relative_with_the_resnet() -> None:
    better = [_group("resnet", 56, _three(6.0), _three(9.0))] + [
        _group(v, d, _three(5.0), _three(7.0), family=v)
        for v, d in (("seresnet", 56), ("preact", 56), ("densenet", 100))
    ]
    claims = claims_for("relatives", better)
    assert len(claims) == 3 and {c.verdict for c in claims} == {"supported"}
    assert any("DenseNet-BC-100" in c.claim for c in claims)
    worse = [_group("resnet", 56, [6.0], [7.0]), _group("seresnet", 56, [8.0], [10.0], family="seresnet")]
    (claim,) = claims_for("relatives", worse)
    assert claim.verdict == "not supported" and "SE-ResNet" in claim.claim


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_standard_budget_runs_several_seeds_of_every_experiment(experiment: str) -> None:
    # The standard budget promises verdicts over seeds: its default can reach a SUPPORTED verdict
    # (evidence.MIN_SEEDS per network), so none plans fewer.
    from reslab.experiments.evidence import MIN_SEEDS

    assert len(parse_seeds(None, experiment, "standard")) >= MIN_SEEDS


@pytest.mark.slow
def test_sigterm_to_a_concurrent_sweep_stops_its_workers(tmp_path: Path) -> None:
    # `pkill -TERM -f "reslab reproduce"` hits the parent: its workers must stop at a checkpoint with it,
    # not train on unpublished after the parent is gone (they did: SIGTERM's default action skipped the
    # clean-up that Ctrl-C runs).
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "reslab", "reproduce", "degradation", "--budget", "smoke", "--dataset"]
    cmd += ["synthetic", "--depths", "20", "--jobs", "2", "--set", "iterations=100000", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    parent = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    logs = [out / "logs" / f"{name}-s0.log" for name in ("plain20", "resnet20")]
    deadline = time.monotonic() + 240
    while not all(p.is_file() and "step " in p.read_text() for p in logs):  # both workers are training
        assert parent.poll() is None and time.monotonic() < deadline, parent.stderr.read()
        time.sleep(0.5)
    parent.send_signal(signal.SIGTERM)
    _, err = parent.communicate(timeout=120)
    alive = _processes_mentioning(str(out / "logs"))
    for pid in alive:  # do not leave them training 100,000 steps should this fail
        os.kill(pid, signal.SIGKILL)
    assert parent.returncode == 130 and err.rstrip().endswith("reslab: interrupted"), err
    assert "Traceback" not in err
    for log in logs:  # each worker stopped at a checkpoint, in one line, and no longer runs
        text = log.read_text()
        assert "checkpoint saved" in text and "Traceback" not in text, text
        assert "Warning" not in text, text  # e.g. runpy's warning when the package imports the worker
    assert not alive, f"workers still running after the parent ended: {alive}"
    session = json.loads((out / "experiment.json").read_text())["sessions"][-1]
    assert session["status"] == "interrupted"
    assert {RunDir.status(out / "runs" / f"{n}-s0") for n in ("plain20", "resnet20")} == {"unfinished"}


def _processes_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (Linux /proc)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_worker_env_keeps_freed_memory_unless_the_user_says_otherwise(monkeypatch) -> None:
    # DenseNet-BC-100's >32 MB activations were faulted in anew every step under glibc's defaults
    # (bench/step_cost.py); CPU workers run with glibc keeping freed memory, and a user's own setting wins.
    from reslab.experiments.pool import worker_env

    monkeypatch.delenv("MALLOC_MMAP_MAX_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    env = worker_env(1)
    assert env["MALLOC_MMAP_MAX_"] == "0" and int(env["MALLOC_TRIM_THRESHOLD_"]) >= 2**32
    assert env["OMP_NUM_THREADS"] == "1"  # the worker's share of the cores, not the parent's setting
    assert env["PATH"] == os.environ["PATH"]
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    assert worker_env(2)["MALLOC_MMAP_MAX_"] == "65536"


def test_an_unfinished_run_is_published_with_its_checkpoint_and_continues_on_a_fresh_machine(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    # A run longer than a sitting (DenseNet-BC-100 on a CPU) must not restart on every new machine: the
    # stopped sweep publishes its checkpoint, a rerun from the committed folder alone continues it.
    dest = tmp_path / "committed"
    plan = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", out=tmp_path / "a"
    )
    first, second = plan.runs  # plain20, resnet20
    _stop_at_evaluation(monkeypatch, 4)  # resnet20 stops after its step-2 checkpoint
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_experiment(plan, progress=False, publish=dest, log=lines.append)
    monkeypatch.undo()
    partial = dest / "runs" / second.name
    assert not (partial / "summary.json").exists()
    manifest = json.loads((partial / "checkpoints" / "last.manifest.json").read_text())
    assert manifest["step"] == 2 and not (partial / "checkpoints" / "prev.manifest.json").exists()
    assert (dest / "runs" / first.name / "summary.json").is_file()
    assert not (dest / "runs" / first.name / "checkpoints").exists()  # a finished run carries none
    row2 = (partial / "metrics.csv").read_text().splitlines()[1]
    assert any("unfinished runs' last checkpoints" in line for line in lines), lines
    # Bytes that do not match their manifest (a generation being rotated by a training worker) are not
    # published.
    from reslab.experiments.publishing import publish_partial

    state = plan.run_dir(second) / "checkpoints" / "last.state.pt"
    good = state.read_bytes()
    state.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    assert not publish_partial(plan, second, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    state.write_bytes(good)

    # A fresh machine: the committed folder only, another experiment folder.
    fresh = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", out=tmp_path / "b"
    )
    assert main(["reproduce", "degradation", "--budget", "smoke", "--dataset", "synthetic", "--depths", "20",
                 "--out", str(fresh.out), "--publish", str(dest), "--dry-run"]) == 0  # fmt: skip
    dry = capsys.readouterr().out
    assert re.search(rf"{second.name} .* continue from the published step 2$", dry, re.M), dry
    lines.clear()
    result = run_experiment(fresh, progress=False, publish=dest, log=lines.append)
    assert result["published"] == [first.name] and result["resumed"] == [second.name], result
    assert any(f"{second.name}: continuing from the checkpoint published" in line for line in lines), lines
    rows = (fresh.run_dir(second) / "metrics.csv").read_text().splitlines()
    assert rows[1] == row2 and [r.split(",")[0] for r in rows[1:]] == ["2", "4"], "continued, not restarted"
    assert (partial / "summary.json").is_file() and not (partial / "checkpoints").exists()

    # A damaged published checkpoint is refused by the engine's verification, in one line (in folders
    # without the finished sibling, which would be copied instead).
    import shutil

    (partial / "summary.json").unlink()
    (partial / "checkpoints").mkdir()
    for name in ("last.safetensors", "last.state.pt", "last.manifest.json"):
        src = plan.run_dir(second) / "checkpoints" / name
        (partial / "checkpoints" / name).write_bytes(src.read_bytes())
    state = partial / "checkpoints" / "last.state.pt"
    state.write_bytes(state.read_bytes()[:-10] + b"0123456789")
    damaged = shutil.copytree(dest, tmp_path / "x" / "committed")
    broken = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", out=tmp_path / "y" / "c"
    )
    lines.clear()
    with pytest.raises(ReslabError, match="1 run\\(s\\) failed: resnet20-s0"):
        run_experiment(broken, progress=False, publish=damaged, log=lines.append)
    assert any("FAILED" in line and "no sound checkpoint" in line for line in lines), lines


def test_a_thin_network_does_not_hide_what_the_others_decide() -> None:
    """A depth added to a sweep with one seed (plain-110) is listed as not counted yet; the claims are
    judged from the networks that have three seeds."""
    groups = [
        _group("plain", 20, _three(10.0), _three(12.0)),
        _group("plain", 56, _three(16.0), _three(18.0)),
        _group("resnet", 20, _three(8.0), _three(10.0)),
        _group("resnet", 56, _three(6.0), _three(8.5)),
        _group("plain", 110, [70.0], [68.0]),
    ]
    claims = claims_for("degradation", groups)
    assert {c.verdict for c in claims} == {"supported"}
    # the note is on the claims plain-110 would be judged in (the plain nets' trend), not on the ResNets'
    noted = {
        c.claim.startswith("Among plain nets")
        for c in claims
        if "Not counted until they have 3 seeds: plain-110 (1)." in c.sentence
    }
    assert noted == {True} and sum(c.claim.startswith("Among plain nets") for c in claims) == 1
    assert any("At depth 56" in c.claim for c in claims)


def test_pocock_levels_and_a_verdict_held_to_its_number_of_looks(tmp_path: Path) -> None:
    """Pocock's nominal levels (Jennison & Turnbull 2000, Table 2.1: 0.0294 at 2 looks, 0.0221 at 3); a
    claim supported at adjusted p = 0.03 on its third look is inconclusive, on its first it stands; a look
    is recorded in the newest session entry."""
    from reslab.experiments.looks import history, hold_to_looks, pocock_level, record_look

    assert pocock_level(1) == pytest.approx(0.05, abs=1e-4)
    assert pocock_level(2) == pytest.approx(0.0294, abs=2e-4) and pocock_level(3) == pytest.approx(
        0.0221, abs=2e-4
    )
    assert pocock_level(20) == pytest.approx(0.05 / 20)
    groups = [_group("resnet", 20, _three(8.0), _three(9.0)), _group("resnet", 56, _three(7.0), _three(8.0))]

    def claim() -> Claim:
        return Claim("X beats Y", "supported", "evidence.", groups=groups, p=0.01, p_holm=0.03, family=3)

    earlier = [{"claim": "X beats Y", "seeds": [2, 2], "p": 0.2, "p_holm": 0.4},
               {"claim": "X beats Y", "seeds": [3, 2], "p": 0.05, "p_holm": 0.1}]  # fmt: skip
    sessions = [
        {"started": "2026-12-01", "looks": earlier[:1]},
        {"started": "2026-12-02", "looks": earlier[1:]},
    ]
    third = claim()
    hold_to_looks([third], sessions)
    assert third.looks == 3 and third.verdict == "inconclusive" and "Pocock" in third.sentence
    first = claim()
    hold_to_looks([first], [])
    assert first.looks == 1 and first.verdict == "supported"
    plan = plan_experiment("degradation", budget="quick", out=tmp_path / "e", dataset="cifar10", seeds=1)
    write_plan(plan, [{"started": "2026-12-03", "status": "finished"}])
    record_look(plan.out, [claim(), Claim("no p", "inconclusive", "-")])
    (session,) = json.loads((plan.out / "experiment.json").read_text())["sessions"]
    assert session["looks"] == [{"claim": "X beats Y", "seeds": [3, 3], "p": 0.01, "p_holm": 0.03}]
    record_look(plan.out, [claim()])  # the same data again: the same look, nothing added
    assert len(json.loads((plan.out / "experiment.json").read_text())["sessions"]) == 1
    four = [8.0, 8.1, 8.2, 8.3]
    more = Claim("X beats Y", "supported", "evidence.", p=0.004, p_holm=0.012, family=3,
                 groups=[_group("resnet", 20, four, four), _group("resnet", 56, four, four)])  # fmt: skip
    record_look(plan.out, [more])  # new data after this session's look: a session entry of its own
    sessions = json.loads((plan.out / "experiment.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[0]["looks"][0]["seeds"] == [3, 3]
    assert sessions[1]["looks"][0]["seeds"] == [4, 4] and sessions[1]["trained"] == []
    other = Claim("Z beats W", "supported", "evidence.", p=0.001, p_holm=0.002, family=3, groups=groups)
    record_look(plan.out, [more, other])  # only Z's data is new: X is not looked at again
    sessions = json.loads((plan.out / "experiment.json").read_text())["sessions"]
    assert [x["claim"] for x in sessions[-1]["looks"]] == ["Z beats W"]
    repeated = [{"started": "a", "looks": earlier[:1]}, {"started": "b", "looks": earlier[:1]}]
    assert len(history(repeated)["X beats Y"]) == 1  # an old record's repeat of the same seeds: one look


def test_recovered_looks_and_a_renamed_claim_count_with_the_recorded_ones() -> None:
    """Looks read back from committed reports (a ``recovered`` session entry, each look with its own date
    and git revision, no adjusted p) count in date order with the recorded ones, and a claim's looks
    recorded under its former text (``renamed``) are its own: four looks, held to Pocock's 0.0182."""
    from reslab.experiments.evidence import Claim
    from reslab.experiments.looks import history, hold_to_looks, looks_section

    old, new = "Deeper is better (20 → 56)", "ResNet-56 beats ResNet-20 (20 → 56)"
    recorded = {
        "started": "2026-12-06T07:50:00+00:00",
        "looks": [{"claim": old, "seeds": [5, 5], "p": 0.084, "p_holm": 0.084}],
    }
    recovered = {"started": "2026-11-29T20:54:00+00:00", "recovered": True, "renamed": {old: new}, "looks": [
        {"claim": new, "seeds": [2, 2], "p": 0.124, "p_holm": None, "started": "2026-11-29T20:54:00+00:00", "git": "bedc825"},
        {"claim": new, "seeds": [3, 3], "p": 0.142, "p_holm": None, "started": "2026-12-06T07:00:00+00:00", "git": "5e3e0e8"},
    ]}  # fmt: skip
    sessions = [recorded, recovered]  # the recovered entry may sit anywhere: looks are taken in date order
    assert [look["seeds"] for look in history(sessions)[new]] == [
        [2, 2],
        [3, 3],
        [5, 5],
    ] and old not in history(sessions)
    groups = [_group("resnet", 20, [7.0] * 8, [7.4] * 8), _group("resnet", 56, [7.0] * 8, [7.2] * 8)]
    held = Claim(new, "supported", "s.", groups=groups, p=0.019, p_holm=0.019)
    kept = Claim(new, "supported", "s.", groups=groups, p=0.007, p_holm=0.007)
    hold_to_looks([held], sessions)
    hold_to_looks([kept], sessions)
    assert held.looks == kept.looks == 4 and held.verdict == "inconclusive" and kept.verdict == "supported"
    text = "\n".join(looks_section([kept], sessions))
    assert "2026-11-29 (2 + 2 seeds, git bedc825): p = 0.124, not adjusted then" in text
    assert "2026-12-06 (5 + 5 seeds): p = 0.084, adjusted p = 0.084" in text and "held to 0.0182" in text
    assert "read back from the committed reports" in text


def test_a_publish_keeps_the_looks_recorded_in_the_published_copy() -> None:
    """The published experiment.json may hold a look its experiment folder's copy lacks (a look recorded
    after publishing); merging the two keeps it and takes the final status from the newer copy."""
    from reslab.experiments.publishing import _merge_sessions

    published = [{"started": "t0", "host": "h", "status": "finished", "looks": [{"claim": "c", "p": 0.01}]}]
    local = [{"started": "t0", "host": "h", "status": "finished", "wall_s": 5.0},
             {"started": "t1", "host": "h", "status": "running"}]  # fmt: skip
    merged = _merge_sessions(published, local)
    assert merged[0] == {"started": "t0", "host": "h", "status": "finished", "looks": [{"claim": "c", "p": 0.01}],
                         "wall_s": 5.0}  # fmt: skip
    assert [s["started"] for s in merged] == ["t0", "t1"]


def test_an_invocation_that_publishes_records_its_look_on_the_published_report(tmp_path: Path) -> None:
    """With --publish the look is the published report's (it may hold runs trained elsewhere that the
    experiment folder lacks): recorded in the published experiment.json, not judged on the folder alone."""
    plan = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", seeds=3, out=tmp_path / "a"
    )
    write_plan(plan, [{"wall_s": 1.0, "jobs": 1}])
    _fake_runs(plan)
    dest = tmp_path / "pub"
    from reslab.experiments.publishing import publish

    publish(plan.out, dest, look=True)  # what run_experiment does at its end with --publish
    published = json.loads((dest / "experiment.json").read_text())["sessions"]
    local = json.loads((plan.out / "experiment.json").read_text())["sessions"]
    assert any(s.get("looks") for s in published) and not any(s.get("looks") for s in local)
