"""Runs shared between experiments (reslab.experiments.reuse): the same training is done once.

``highway`` trains ResNet-20 and plain-20 exactly as ``degradation`` does: after a degradation sweep, a
highway sweep next to it (or next to its published results) copies those runs and trains only the
highway networks; anything that changes the arithmetic (here the seed or the learning rate) is trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reslab.cli import main
from reslab.experiments import plan_experiment, run_experiment
from reslab.experiments.reuse import REUSED_FILE, identical_run, resolved_config, same_training


def test_same_training_ignores_machine_keys_and_absent_default_fields() -> None:
    plan = plan_experiment("degradation", budget="smoke", dataset="synthetic", depths="20", out=Path("x/e"))
    want = resolved_config(plan, plan.runs[0])
    assert same_training(dict(want), want)
    assert same_training(want | {"threads": 7, "device": "cuda", "data_dir": "/elsewhere"}, want)
    older = {k: v for k, v in want.items() if k != "ema_decay"}  # written before the field existed
    assert same_training(older, want)
    assert not same_training(older, want | {"ema_decay": 0.999})
    assert not same_training(want | {"seed": 1}, want)
    assert not same_training(want | {"amp": "bf16"}, want)
    assert not same_training({"model": want["model"], "seed": want["seed"]}, want)


@pytest.mark.slow
def test_a_second_experiment_reuses_the_runs_the_first_finished(tmp_path: Path, capsys) -> None:
    root = tmp_path / "experiments"
    degradation = plan_experiment(
        "degradation", budget="smoke", dataset="synthetic", depths="20", out=root / "degradation"
    )
    pub = tmp_path / "docs" / "degradation-smoke"
    first = run_experiment(degradation, progress=False, publish=pub)
    assert sorted(first["trained"]) == ["plain20-s0", "resnet20-s0"] and first["reused"] == {}

    highway = plan_experiment(
        "highway", budget="smoke", dataset="synthetic", depths="20", out=root / "highway"
    )
    assert main(["reproduce", "highway", "--budget", "smoke", "--dataset", "synthetic", "--depths", "20",
                 "--out", str(highway.out), "--dry-run"]) == 0  # fmt: skip
    dry = capsys.readouterr().out
    assert "reuse: " in dry and "highway20-s0" in dry
    # the seed plan, sized from the runs the pool has (one seed each: no spread measured yet)
    assert (
        "Planned seeds" in dry and "| depth 20: ResNet better than plain | Welch, two-sided | test |" in dry
    )
    assert "3 (no spread measured yet)" in dry
    result = run_experiment(highway, progress=False)
    assert sorted(result["reused"]) == ["plain20-s0", "resnet20-s0"]
    assert result["trained"] == ["highway20-s0"]
    assert "## Planned seeds" in (highway.out / "report.md").read_text()
    for name in result["reused"]:
        src, dst = degradation.run_dir(name), highway.run_dir(name)
        assert json.loads((dst / REUSED_FILE).read_text())["from"] == str(src.resolve())
        assert (dst / "metrics.csv").read_bytes() == (src / "metrics.csv").read_bytes()
        assert (dst / "checkpoints").is_dir(), "a local run comes with its weights"
    session = json.loads((highway.out / "experiment.json").read_text())["sessions"][-1]
    assert session["trained"] == ["highway20-s0"] and sorted(session["reused"]) == sorted(result["reused"])

    # Only the published copy left (a fresh machine): still reused, from docs/results.
    import shutil

    shutil.rmtree(root)
    fresh = plan_experiment("highway", budget="smoke", dataset="synthetic", depths="20", out=root / "hw2")
    assert identical_run(fresh, fresh.runs[0], [pub.parent]) is not None

    # Another seed or another learning rate is another training.
    other = plan_experiment(
        "highway", budget="smoke", dataset="synthetic", depths="20", seeds="1,2", out=root / "hw3"
    )
    assert all(identical_run(other, r, [tmp_path / "docs"]) is None for r in other.runs)
    faster = plan_experiment(
        "highway", budget="smoke", dataset="synthetic", depths="20", out=root / "hw4", overrides={"lr": 0.05}
    )
    assert all(identical_run(faster, r, [tmp_path / "docs"]) is None for r in faster.runs)
