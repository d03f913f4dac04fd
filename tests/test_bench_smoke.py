"""The GPU benchmark suite (bench/gpu_suite.py) in its --tiny mode on the CPU: every measurement runs, none
fails, the JSON holds the provenance and the numbers, and the table is printed last."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "bench" / "gpu_suite.py"


def _load_suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_suite", mod)  # dataclasses resolve their annotations through it
    spec.loader.exec_module(mod)
    return mod


def test_extrapolate_schedule_arithmetic():
    # 3 evaluation windows of 100 steps at 1000 img/s (batch 10: 1 s of training each); the first window
    # also holds 1 s of setup; each later window adds 1.5 s of evaluation + checkpoint.
    rows = [
        {"step": 100, "images_per_s": 1000.0, "elapsed": 3.0},
        {"step": 200, "images_per_s": 1000.0, "elapsed": 5.5},
        {"step": 300, "images_per_s": 1000.0, "elapsed": 8.0},
    ]
    ex = _load_suite().extrapolate_schedule(rows, batch=10, total=1000, every=100, prefix_wall=8.5)
    assert ex["s_per_iteration"] == pytest.approx(0.01)
    assert ex["s_per_evaluation"] == pytest.approx(1.5)
    assert ex["evaluations"] == 10
    # 8.5 s measured + 700 steps x 0.01 s + 7 evaluations x 1.5 s
    assert ex["wall_s"] == pytest.approx(26.0)


def test_gpu_suite_tiny_on_cpu(tmp_path):
    out = tmp_path / "suite.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(SUITE), "--tiny", "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())

    meta = doc["meta"]
    assert meta["tiny"] is True and meta["device"] == "cpu"
    assert meta["torch"] and meta["date"].startswith("20") and "git_revision" in meta
    assert doc["finished"] is True and doc["aborted"] is False
    assert doc["peak_bf16_tflops"] > 0

    rows = {r["name"]: r for r in doc["results"]}
    failed = {
        n: r.get("error") or r.get("skipped") for n, r in rows.items() if "error" in r or "skipped" in r
    }
    assert not failed, failed
    expected = [
        "cifar resnet20 train: reslab loop",
        "cifar resnet20 train: conventional loop",
        "cifar resnet20: reslab / conventional",
        "cifar_paper resnet20 32 iters: EXTRAPOLATED from 8",
        "cifar_paper resnet20 32 iters: measured",
        "resnet18 train: reslab train()",
        "resnet18 train: reslab model, plain AMP loop",
        "resnet18 train: torchvision, plain AMP loop",
        "resnet18 infer: reslab evaluate()",
        "resnet18 infer: reslab model, plain loop",
        "resnet18 infer: torchvision, plain loop",
        "sweep 2 models: sequential",
        "sweep 2 models: concurrent processes",
    ]
    assert [n for n in expected if n not in rows] == []
    for name in expected:
        r = rows[name]
        if "ratio" in r:
            assert r["ratio"] > 0 and r["target"] == ">= 5x" and isinstance(r["target_met"], bool)
            continue
        assert r["images_per_s"] > 0, name
        assert r["mfu"] > 0, name

    # --tiny scales the recipe down to 32 iterations with evaluations every 8: extrapolated from a prefix of
    # 8 (4 windows of 2), then run for real
    paper = rows["cifar_paper resnet20 32 iters: EXTRAPOLATED from 8"]
    assert paper["EXTRAPOLATED"] is True and paper["measured"] is False
    assert paper["iterations"] == 32 and paper["evaluations"] == 4 and paper["prefix_evaluations"] == 4
    assert paper["wall_time_s"] > paper["prefix_wall_s"] > 0
    assert paper["images_per_s"] == pytest.approx(32 * 8 / paper["wall_time_s"], rel=1e-2)
    measured = rows["cifar_paper resnet20 32 iters: measured"]
    assert measured["measured"] is True and measured["iterations"] == 32
    assert measured["extrapolated_s"] == pytest.approx(paper["wall_time_s"], rel=1e-2)
    assert measured["images_per_s"] == pytest.approx(32 * 8 / measured["wall_time_s"], rel=1e-2)
    assert measured["final"]["step"] == 32
    assert paper["target"] is None and measured["target"] is None  # the 60 s target is for 64k only

    cifar20 = rows["cifar resnet20 train: reslab loop"]
    assert cifar20["macs_per_image"] == pytest.approx(40_551_040 * 16 * 16 / (32 * 32), rel=0.02)
    assert set(rows["sweep 2 models: concurrent processes"]["per_model_s"]) == {"plain20", "resnet20"}

    # the table comes last: header after every progress line, the total on the last line
    lines = proc.stdout.strip().splitlines()
    header = max(i for i, line in enumerate(lines) if line.startswith("measurement"))
    assert all(not line.startswith("[") for line in lines[header:])
    assert lines[-1].startswith("total ") and str(out) in lines[-1]
    assert sum(1 for line in lines[header:] if "EXTRAPOLATED" in line) == 1
    assert sum(1 for line in lines[header:] if "(measured)" in line) == 1


def test_gpu_suite_optional_groups_tiny_on_cpu(tmp_path):
    """--only options,fmnist: every engine-option row runs (compile modes are GPU-only) and reports its
    ratio to the defaults; fmnist runs the fashion_mnist_fast recipe on the real data when it is here."""
    from reslab.data import find_dataset

    fm = find_dataset("fashion-mnist")
    out = tmp_path / "suite.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    only = "options,fmnist" if fm is not None else "options"
    cmd = [sys.executable, str(SUITE), "--tiny", "--device", "cpu", "--out", str(out), "--only", only]
    if fm is not None:
        cmd += ["--fmnist-dir", str(fm)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    failed = {
        n: r.get("error") or r.get("skipped") for n, r in rows.items() if "error" in r or "skipped" in r
    }
    assert not failed, failed
    options = [r for r in rows.values() if r["group"] == "options"]
    assert [r["option"] for r in options][:2] == ["defaults", "optimizer_impl=foreach"]
    assert len(options) == 7 and all(r["images_per_s"] > 0 and r["ratio_to_defaults"] > 0 for r in options)
    assert options[0]["ratio_to_defaults"] == 1.0
    if fm is not None:
        seeds = [r for r in rows.values() if r["group"] == "fmnist" and "seed" in r]
        assert len(seeds) == 2 and all(0 <= r["test_accuracy"] <= 100 and r["wall_s"] > 0 for r in seeds)
        assert "fashion_mnist_fast mean over 2 seeds" in rows


def test_checkpoint_cost_measures_resnet20(tmp_path):
    """bench/checkpoint_cost.py on one round of ResNet-20: the shares are fractions of a real save/read."""
    spec = importlib.util.spec_from_file_location("checkpoint_cost", ROOT / "bench" / "checkpoint_cost.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = mod.measure("resnet20", 1, tmp_path)
    assert row["params"] == 269_722  # ResNet-20 as in the paper
    assert 0 < row["hash_share_of_save"] < 1 and 0 < row["verify_share_of_read"] < 1
    assert row["bytes"]["state"] > 2 * row["bytes"]["weights"]  # weights + momentum in the state


def _fmnist_installed() -> bool:
    from reslab.data import find_dataset

    return find_dataset("fashion-mnist") is not None


@pytest.mark.skipif(not _fmnist_installed(), reason="Fashion-MNIST not installed (make data)")
def test_train_throughput_quick_reports_every_column(tmp_path):
    """bench/train_throughput.py --quick on ResNet-20 with --rss: (a), (a2), (b), (b0), (c), the ratios and the
    peak memory of both precisions, written as JSON."""
    out = tmp_path / "t.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train_throughput.py"), "--quick", "--models", "resnet20",
         "--threads", "1", "--rss", "--rss-model", "resnet20", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())
    row = r["models"]["resnet20"]
    assert all(row[k] > 0 for k in ("ceiling", "best_ceiling", "reslab", "reslab_fp32", "conventional"))
    assert row["reslab_over_best_ceiling"] == pytest.approx(row["reslab"] / row["best_ceiling"])
    assert row["reslab_over_fp32"] == pytest.approx(row["reslab"] / row["reslab_fp32"])
    # the default loop's precision is reported beside its speed, with the probe's reason
    assert r["precision_b"] == ("bf16" if r["native_bf16"] else "fp32")
    assert (
        r["precision_reason_b"].startswith(r["precision_b"]) and "(b) reslab " + r["precision_b"] in p.stdout
    )
    rss = r["peak_rss_mib"]
    assert rss["fp32"]["peak"] >= rss["fp32"]["before_steps"] > 50  # torch alone is tens of MiB


def test_step_cost_ratios_and_core_hours(tmp_path):
    """bench/step_cost.py on the depth-20 networks of degradation and highway: every network is timed,
    the reference's ratio is 1, and the runs highway shares with degradation are counted apart."""
    out = tmp_path / "cost" / "step_cost.json"  # the folder does not exist yet
    cmd = [sys.executable, str(ROOT / "bench" / "step_cost.py"), "--experiments", "degradation,highway"]
    cmd += ["--depths", "20", "--reference", "resnet20", "--reference-minutes", "17", "--rounds", "1"]
    cmd += ["--batch", "8", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    rows = {r["network"]: r for r in data["networks"]}
    assert set(rows) == {"resnet20", "plain20", "highway20"}
    assert rows["resnet20"]["ratio"] == 1.0 and rows["resnet20"]["est_minutes"] == 17
    assert all(r["s_per_step"] > 0 for r in rows.values())
    highway = data["experiments"]["highway"]  # ResNet-20 and plain-20 (3 seeds each) come from degradation
    assert highway["runs"] == 9  # three networks, the standard default of 3 seeds (evidence.MIN_SEEDS)
    assert highway["core_hours"] == pytest.approx(3 * rows["highway20"]["est_minutes"] / 60)
    assert highway["reused_core_hours"] == pytest.approx(3 * (17 + rows["plain20"]["est_minutes"]) / 60)
    assert data["experiments"]["degradation"]["reused_core_hours"] == 0


def test_step_cost_charges_a_run_to_the_first_experiment_that_trains_it(tmp_path):
    """shortcuts at depth 32: option A (the builder's own shortcut) and plain-32 are degradation's runs at
    that depth, copied; options B and C are its own training."""
    out = tmp_path / "cost.json"
    cmd = [sys.executable, str(ROOT / "bench" / "step_cost.py"), "--experiments", "shortcuts"]
    cmd += ["--depths", "32", "--reference", "resnet32", "--rounds", "1", "--batch", "8", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "copied from degradation" in proc.stdout
    data = json.loads(out.read_text())
    est = {r["network"]: r["est_minutes"] for r in data["networks"]}
    shortcuts = data["experiments"]["shortcuts"]
    assert shortcuts["reused_core_hours"] == pytest.approx(3 * (est["resnet32"] + est["plain32"]) / 60)
    assert shortcuts["core_hours"] == pytest.approx(
        3 * (est["resnet32 shortcut=B"] + est["resnet32 shortcut=C"]) / 60
    )


def test_speedrun_table_divides_each_run_by_the_demo_of_its_own_round(tmp_path):
    """bench/speedrun.py's table (no training): each variant's time over the demo run of the same seed
    round, the mean and the minimum accuracy over seeds, the flips' share; the results file resumes."""
    spec = importlib.util.spec_from_file_location("speedrun", ROOT / "bench" / "speedrun.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [
        {"variant": "demo", "seed": 0, "test_acc": 91.7, "run_s": 100.0, "precision": "fp32"},
        {"variant": "demo", "seed": 1, "test_acc": 91.8, "run_s": 200.0, "precision": "fp32"},
        {
            "variant": "speedrun",
            "seed": 0,
            "test_acc": 93.1,
            "run_s": 90.0,
            "precision": "bf16",
            "test_acc_no_tta": 93.0,
        },
        {
            "variant": "speedrun",
            "seed": 1,
            "test_acc": 92.9,
            "run_s": 220.0,
            "precision": "bf16",
            "test_acc_no_tta": 92.8,
        },
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert mod.load(tmp_path) == rows
    line = next(ln for ln in mod.table(rows).splitlines() if ln.startswith("| speedrun:"))
    assert "| 0,1 | 93.00 (92.90) | 93.10 / 92.90 | 92.90 | 1.00 (0.90, 1.10) | bf16 |" in line


def test_recover_looks_reads_a_verdict_line_of_each_report_format():
    """bench/recover_looks.py reads the claim, the p-value and the seeds per network from a committed
    report's verdict line, in the formats the reports had before looks were recorded."""
    spec = importlib.util.spec_from_file_location("recover_looks", ROOT / "bench" / "recover_looks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (
        "- **Among ResNets, deeper is no worse (test error)** — SUPPORTED: test error 7.36 ± 0.13% (ResNet-20) → "
        "7.12 ± 0.07% (ResNet-56); ResNet-56 minus ResNet-20 = -0.23 points (Welch's t-test p = 0.019, 5 + 3 "
        "seeds, seed ranges overlap); a deeper net is significantly worse at 0 of 1 steps in depth.\n"
        "- **Among plain nets, the deeper net has the higher training error** — SUPPORTED (p < 0.001; the "
        "report's only claim): training error (Welch's t-test p < 0.001, 8 + 6 + 4 seeds).\n"
        "- Among ResNets, deeper is no worse: a caption line, not a verdict (p = 0.5, 2 + 2 seeds).\n"
    )
    found = [(m["claim"], mod._p(m["p"]), m["seeds"]) for m in mod.VERDICT.finditer(text)]
    assert found == [
        ("Among ResNets, deeper is no worse (test error)", 0.019, "5 + 3"),
        ("Among plain nets, the deeper net has the higher training error", 0.0005, "8 + 6 + 4"),
    ]
