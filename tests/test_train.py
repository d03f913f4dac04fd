"""The training engine: config/recipes, schedules, the run directory, exact resume after SIGKILL, eval."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reslab.cli import main
from reslab.config import apply_overrides
from reslab.errors import ConfigError
from reslab.train import TrainConfig, list_recipes, load_recipe, parse_set
from reslab.train.schedule import Schedule


def _have_fmnist() -> bool:
    from reslab.data import find_dataset

    return find_dataset("fashion-mnist") is not None


needs_data = pytest.mark.skipif(not _have_fmnist(), reason="Fashion-MNIST not installed (make data)")

# A tiny but real run: ResNet-8 (n=1) on 512 Fashion-MNIST images, 200 evaluation images.
TINY = [
    "--model", "resnet", "--set", "model_kwargs.depth=8", "--subset", "512", "--val-split", "128",
    "--batch-size", "32", "--iterations", "24", "--device", "cpu", "--seed", "3",
    "--set", "eval_every=12", "--set", "log_every=4", "--set", "checkpoint_every=4",
    "--set", "eval_subset=200", "--set", "tensorboard=false", "--set", "warmup_iters=4",
    "--set", "schedule=cosine", "--lr", "0.05", "--set", "threads=1",
]  # fmt: skip


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ------------------------------------------------------------------------------------ recipes, config


def test_recipes_load_and_cifar_paper_numbers():
    assert {
        "cifar_paper",
        "imagenet_paper",
        "fashion_mnist",
        "fashion_mnist_demo",
        "fashion_mnist_fast",
        "fashion_mnist_best",
    } <= set(list_recipes())
    for name in list_recipes():
        load_recipe(name)
    c = load_recipe("cifar_paper")
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.batch_size) == ("sgd", 0.1, 0.9, 1e-4, 128)
    assert c.iterations == 64000 and c.epochs is None
    assert c.schedule == "step" and c.milestones == [32000, 48000] and c.gamma == 0.1
    assert (c.warmup_iters, c.warmup_mode, c.warmup_min_depth) == (400, "constant", 110)
    assert math.isclose(c.lr * c.warmup_factor, 0.01)
    i = load_recipe("imagenet_paper")
    assert (i.batch_size, i.lr, i.epochs, i.milestones, i.weight_decay) == (256, 0.1, 90, [30, 60], 1e-4)
    d = load_recipe("fashion_mnist_demo")
    assert d.model == "resnet20" and d.dataset == "fashion-mnist"


def test_set_parsing_and_overrides():
    got = parse_set(
        ["lr=0.05", "milestones=[10, 20]", "model_kwargs.shortcut=B", "ema_decay=0.999", "subset=none"]
    )
    assert got == {
        "lr": 0.05,
        "milestones": [10, 20],
        "model_kwargs.shortcut": "B",
        "ema_decay": 0.999,
        "subset": "none",
    }
    cfg = load_recipe("cifar_paper")
    apply_overrides(cfg, got)
    assert cfg.lr == 0.05 and cfg.milestones == [10.0, 20.0] and cfg.model_kwargs == {"shortcut": "B"}
    assert cfg.subset is None and cfg.ema_decay == 0.999
    apply_overrides(cfg, {"epochs": 3})
    assert cfg.epochs == 3 and cfg.iterations is None
    apply_overrides(cfg, {"freeze": "stem,layer1"})
    assert cfg.freeze == ["stem", "layer1"]
    with pytest.raises(ConfigError, match="did you mean lr"):
        apply_overrides(cfg, {"lrr": 1})
    with pytest.raises(ConfigError, match="batch_size must be an integer"):
        apply_overrides(cfg, {"batch_size": "big"})
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["lr"])


def test_config_validation():
    with pytest.raises(ConfigError, match="lr must be positive"):
        TrainConfig(iterations=10, lr=-0.1).validate()
    with pytest.raises(ConfigError, match="exactly one of iterations and epochs"):
        TrainConfig(iterations=10, epochs=2).validate()
    with pytest.raises(ConfigError, match="milestone"):
        TrainConfig(iterations=10, milestones=[20]).validate()
    with pytest.raises(ConfigError, match="momentum"):
        TrainConfig(iterations=10, momentum=1.5).validate()
    with pytest.raises(ConfigError, match="schedule must be one of"):
        TrainConfig(iterations=10, schedule="exp").validate()


def test_unknown_recipe_key_names_closest(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("model: resnet20\niterations: 10\nweight_decy: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'weight_decy'; did you mean weight_decay"):
        load_recipe(str(p))


# ------------------------------------------------------------------------------------------ schedules


def test_step_schedule_milestones_exact():
    s = Schedule(base_lr=0.1, total_steps=64000, kind="step", milestones=(32000, 48000), gamma=0.1)
    assert s(0) == 0.1 and s(31999) == 0.1
    assert math.isclose(s(32000), 0.01) and math.isclose(s(47999), 0.01)
    assert math.isclose(s(48000), 0.001) and math.isclose(s(63999), 0.001)


def test_schedule_from_config_epochs_and_paper_warmup():
    cfg = load_recipe("imagenet_paper")
    s = Schedule.from_config(cfg, total_steps=90 * 100, steps_per_epoch=100)
    assert s.milestones == (3000, 6000) and math.isclose(s(2999), 0.1) and math.isclose(s(3000), 0.01)
    paper = load_recipe("cifar_paper")
    s110 = Schedule.from_config(paper, 64000, 390, depth=110)
    assert math.isclose(s110(0), 0.01) and math.isclose(s110(399), 0.01) and s110(400) == 0.1
    s56 = Schedule.from_config(paper, 64000, 390, depth=56)
    assert s56(0) == 0.1


def test_linear_warmup_and_cosine_exact():
    s = Schedule(base_lr=0.2, total_steps=110, kind="cosine", warmup_iters=10, warmup_factor=0.0)
    assert math.isclose(s(0), 0.02) and math.isclose(s(4), 0.1) and math.isclose(s(9), 0.2)
    assert math.isclose(s(10), 0.2)  # cosine starts at the peak after warm-up
    mid = 10 + (110 - 10 - 1) / 2
    assert math.isclose(s(int(mid)), 0.2 * 0.5 * (1 + math.cos(math.pi * (int(mid) - 10) / 99)))
    assert math.isclose(s(109), 0.0, abs_tol=1e-12)
    lin = Schedule(base_lr=0.1, total_steps=101, kind="linear", min_lr=0.0)
    assert (
        math.isclose(lin(0), 0.1)
        and math.isclose(lin(50), 0.05)
        and math.isclose(lin(100), 0.0, abs_tol=1e-12)
    )
    half = Schedule(base_lr=1.0, total_steps=10, kind="constant", warmup_iters=4, warmup_factor=0.5)
    assert [half(i) for i in range(5)] == [0.625, 0.75, 0.875, 1.0, 1.0]


# -------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--set", "lrr=0.1"], "did you mean lr"),
        (["--lr", "-0.1"], "lr must be positive"),
        (["--model", "resnet", "--set", "model_kwargs.depth=21"], "6n+2"),
        (["--model", "resnet21"], "unknown model"),
        (["--recipe", "nope"], "unknown recipe"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, needle, tmp_path, capsys):
    assert main(["train", *argv, "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    line = _err_line(capsys)
    assert needle in line and line.startswith("reslab: error:")
    assert not (tmp_path / "run").exists()  # nothing left behind


# ------------------------------------------------------------------------------------ real tiny runs


def _safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@needs_data
def test_tiny_run_writes_every_file_then_refuses_and_evals(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run), "--quiet"]) == 0
    for name in ("config.yaml", "metrics.csv", "train_log.csv", "summary.json", "curves.png", "train.lock"):
        assert (run / name).is_file(), name
    for name in ("last", "best"):
        assert (run / "checkpoints" / f"{name}.safetensors").is_file()
        assert (run / "checkpoints" / f"{name}.state.pt").is_file()
    from reslab._io import torch_load

    state = torch_load(run / "checkpoints" / "last.state.pt")  # weights_only=True
    assert state["step"] == 24 and state["loader"]["epoch"] >= 1

    metrics = (run / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "step,epoch,lr,train_loss,train_error,val_error,test_error,images_per_s,elapsed"
    assert [r.split(",")[0] for r in metrics[1:]] == ["12", "24"]
    log = (run / "train_log.csv").read_text().splitlines()
    assert log[0] == "step,epoch,lr,loss,error" and len(log) == 1 + 6
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["steps"] == 24 and summary["params"] > 0
    assert 0 <= summary["final"]["test_error"] <= 100 and summary["best"]["metric"] == "val_error"
    assert summary["versions"]["torch"] and summary["device"].startswith("cpu")
    from reslab.models.weights import load_model

    model, meta = load_model(run / "checkpoints" / "last.safetensors")
    assert model.num_classes == 10 and meta["step"] == 24
    cfg = meta["config"]
    assert cfg["dataset"] == "fashion-mnist" and cfg["data"]["input_size"] == [1, 28, 28]
    assert len(cfg["data"]["classes"]) == 10 and len(cfg["data"]["mean"]) == 1
    capsys.readouterr()

    # A finished run directory is refused, nothing touched.
    before = (run / "checkpoints" / "last.safetensors").read_bytes()
    assert main(["train", *TINY, "--out", str(run), "--quiet"]) == 2
    assert "already holds a finished run" in _err_line(capsys)
    assert (run / "checkpoints" / "last.safetensors").read_bytes() == before

    # --resume keeps the run's own config: changing a setting is refused; a finished run is reported.
    assert main(["train", "--resume", str(run), "--batch-size", "64"]) == 2
    assert "--batch-size cannot be changed" in _err_line(capsys)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0

    # Another process holding the lock: refused.
    from reslab.train.checkpoint import RunLock

    with RunLock(run):
        assert main(["train", "--resume", str(run), "--quiet"]) == 2
        assert "in use by another" in _err_line(capsys)

    # reslab eval: errors, per-class accuracy, confusion matrix PNG.
    out = tmp_path / "eval"
    assert main(["eval", str(run), "--out", str(out), "--split", "val", "--device", "cpu"]) == 0
    assert (out / "confusion_val.png").stat().st_size > 1000
    res = json.loads((out / "eval.json").read_text())
    assert len(res["val"]["per_class_accuracy"]) == 10 and res["val"]["n"] == 128
    assert 0 <= res["val"]["top5_error"] <= res["val"]["top1_error"] <= 100

    # Fine-tuning from the run (its best checkpoint) with the stem and layer1 frozen.
    ft = tmp_path / "ft"
    argv = [*TINY, "--iterations", "4", "--init-from", str(run), "--freeze", "stem,layer1", "--quiet"]
    assert main(["train", *argv, "--out", str(ft)]) == 0
    a = _safetensors(run / "checkpoints" / "best.safetensors")
    b = _safetensors(ft / "checkpoints" / "last.safetensors")
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight"):
        assert bool((a[k] == b[k]).all()), k
    assert not bool((a["fc.weight"] == b["fc.weight"]).all())
    capsys.readouterr()
    # A checkpoint of another model: one clear line.
    bad = [
        "--model",
        "resnet20",
        "--init-from",
        str(run),
        "--iterations",
        "2",
        "--subset",
        "256",
        "--val-split",
        "0",
    ]
    assert main(["train", *bad, "--device", "cpu", "--out", str(tmp_path / "bad")]) == 2
    assert "does not fit resnet20" in _err_line(capsys)


@needs_data
def test_resume_after_sigkill_is_bit_identical(tmp_path):
    from reslab.train.checkpoint import state_path

    args = [*TINY, "--set", "checkpoint_every=3", "--quiet"]
    ref = tmp_path / "ref"
    assert main(["train", *args, "--out", str(ref)]) == 0

    run = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "reslab", "train", *args, "--out", str(run)], env=env)
    try:
        deadline = time.time() + 120
        while not state_path(run, "last").exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(0.3)  # somewhere after the first checkpoint, maybe mid-write of a later one
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (run / "summary.json").exists(), "the run finished before it could be killed"
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    a = _safetensors(ref / "checkpoints" / "last.safetensors")
    b = _safetensors(run / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and bool((a[k] == b[k]).all()), k
    ra = (ref / "metrics.csv").read_text().splitlines()
    rb = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:7] for r in ra] == [r.split(",")[:7] for r in rb]
    assert (ref / "train_log.csv").read_text() == (run / "train_log.csv").read_text()


@needs_data
def test_nonfinite_loss_stops_with_the_step(tmp_path, capsys):
    run = tmp_path / "nan"
    assert (
        main(["train", *TINY, "--lr", "1e30", "--set", "warmup_iters=0", "--out", str(run), "--quiet"]) == 2
    )
    line = _err_line(capsys)
    assert "not finite at step" in line
    assert not (run / "summary.json").exists()


@needs_data
def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path, capsys):
    import threading

    from reslab._io import torch_load
    from reslab.train.checkpoint import state_path

    run = tmp_path / "term"
    args = [*TINY, "--iterations", "5000", "--set", "eval_every=0", "--set", "checkpoint_every=100000"]

    def send_sigterm() -> None:  # once the loop is running (its first train_log row exists)
        deadline = time.time() + 60
        while not (run / "train_log.csv").exists() and time.time() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=send_sigterm)
    t.start()
    try:
        rc = main(["train", *args, "--out", str(run), "--quiet"])
    finally:
        t.join()
    err = capsys.readouterr().err
    assert rc == 130, err
    assert "SIGTERM: stopped at step" in err and "--resume" in err
    step = torch_load(state_path(run, "last"))["step"]
    assert 4 <= step < 5000
    assert not (run / "summary.json").exists()


# ------------------------------------------------------------------------- execution options (speed)


def test_execution_options_parse_and_reject():
    cfg = load_recipe("fashion_mnist", **parse_set(["compile=reduce-overhead", "eval_batch_size=auto"]))
    assert cfg.compile == "reduce-overhead" and cfg.eval_batch_size is None
    cfg = load_recipe("fashion_mnist", **parse_set(["compile=true", "optimizer_impl=fused"]))
    assert cfg.compile is True and cfg.optimizer_impl == "fused"
    assert load_recipe("fashion_mnist", cudnn_benchmark="false").cudnn_benchmark is False
    with pytest.raises(ConfigError, match="cutout applies to the in-memory data sets"):
        load_recipe("fashion_mnist", dataset="imagefolder", cutout=4)  # refused before any data loads
    for bad in ("compile=fast", "optimizer_impl=turbo", "cudnn_benchmark=maybe", "eval_batch_size=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_recipe("fashion_mnist", **parse_set([bad]))


@pytest.mark.parametrize("impl", ["fused", "foreach", "loop"])
def test_optimizer_kernels_apply_the_same_update(impl):
    """The three kernel choices are one update rule: after a few SGD steps (momentum, Nesterov, weight
    decay, two learning-rate groups) the weights agree with the per-tensor loop to float rounding."""
    import torch

    from reslab import create_model
    from reslab.train.setup import make_optimizer

    def run(kind: str) -> dict:
        torch.manual_seed(0)
        model = create_model("resnet", depth=8, num_classes=4, in_chans=1)
        cfg = TrainConfig(
            lr=0.1, nesterov=True, weight_decay=5e-4, backbone_lr_scale=0.5, optimizer_impl=kind
        )
        opt = make_optimizer(model, cfg)
        if kind == "fused":
            assert opt.defaults["fused"] is True
        else:
            assert opt.defaults["foreach"] is (kind == "foreach") and not opt.defaults.get("fused")
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            x, y = torch.randn(8, 1, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return {k: v.clone() for k, v in model.state_dict().items()}

    ref, got = run("loop"), run(impl)
    for k in ref:
        assert torch.allclose(ref[k].float(), got[k].float(), rtol=1e-5, atol=1e-6), k


def test_compile_modes_reach_torch_compile(monkeypatch):
    import torch

    from reslab import create_model
    from reslab.tasks.base import Dist
    from reslab.train.setup import wrap_model

    seen = []
    monkeypatch.setattr(torch, "compile", lambda m, mode=None: seen.append(mode) or m)
    model = create_model("resnet20")
    dist = Dist()
    for value, mode in [
        (False, "-"),
        (True, None),
        ("default", None),
        ("reduce-overhead", "reduce-overhead"),
    ]:
        seen.clear()
        assert wrap_model(model, TrainConfig(compile=value), dist) is model
        assert seen == ([] if mode == "-" else [mode])


def test_cudnn_flag_is_restored_and_machine_keys_may_change_on_resume(tmp_path):
    import torch

    from reslab.train import train

    cfg = load_recipe(
        "fashion_mnist", dataset="synthetic", model="resnet", device="cpu", iterations=6, batch_size=8,
        model_kwargs={"depth": 8}, val_split=0, threads=1, tensorboard=False, eval_every=3, log_every=3,
        cudnn_benchmark=True, optimizer_impl="foreach", warmup_iters=0,
    )  # fmt: skip
    before = torch.backends.cudnn.benchmark
    summary = train(cfg.replace(iterations=3), tmp_path / "run", progress=False)
    assert summary["steps"] == 3 and torch.backends.cudnn.benchmark == before
    (tmp_path / "run" / "summary.json").unlink()  # as if killed after its last checkpoint
    resumed = train(cfg.replace(iterations=3, optimizer_impl="loop", eval_batch_size=64), tmp_path / "run",
                    resume=True, progress=False)  # fmt: skip
    assert resumed["steps"] == 3


# ------------------------------------------------------------- the loop's pieces, each on its own


def test_meters_sum_on_the_device_and_survive_a_checkpoint():
    import torch

    from reslab.tasks.base import Dist
    from reslab.train.meters import DeviceSums, Meters, Window

    m = Meters(DeviceSums(torch.device("cpu")))
    m.add(torch.tensor(2.0), torch.tensor(3), 4)  # mean loss 2 over 4 samples, 3 wrong
    m.add(torch.tensor(1.0), torch.tensor(1), 4)
    m.sync(Dist())
    assert (m.log.loss_sum, m.log.errors, m.log.images) == (12.0, 4.0, 8)
    assert m.log.mean_loss == 1.5 and m.log.error == 50.0 and m.eval.images == 8
    m.log.reset()
    assert m.log.images == 0 and m.eval.images == 8 and m.device.reduce(Dist()) is None
    again = Meters(DeviceSums(torch.device("cpu")))
    again.load_state_dict(m.state_dict())
    assert again.log == m.log and again.eval == m.eval
    assert Window.from_state([1.0, 2.0, 3]) == Window(1.0, 2.0, 3, 0.0)  # a checkpoint's 3-field window


def test_run_directory_rules_before_anything_is_touched(tmp_path):
    from reslab.errors import ConfigError, ReslabError
    from reslab.owned import new_marker
    from reslab.train.recipe import config_to_yaml
    from reslab.train.rundir import RunDir, check_target

    cfg = load_recipe("fashion_mnist_demo")
    assert (
        RunDir.status(tmp_path / "new") == "missing"
        and check_target(cfg, tmp_path / "new", resume=False, overwrite=False) is cfg
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(config_to_yaml(cfg))
    assert RunDir.status(run) == "foreign"  # a file name a user may have is no run: reslab's marker is
    new_marker(run, "run", ["config.yaml"])
    assert RunDir.status(run) == "unfinished"
    with pytest.raises(ReslabError, match="already holds an unfinished run"):
        check_target(cfg, run, resume=False, overwrite=False)
    with pytest.raises(ConfigError, match="exclude each other"):
        check_target(cfg, run, resume=True, overwrite=True)
    with pytest.raises(ConfigError, match="batch_size"):
        check_target(cfg.replace(batch_size=64), run, resume=True, overwrite=False)
    assert check_target(cfg.replace(lr=0.01, threads=1), run, resume=True, overwrite=False).lr == 0.01
    assert check_target(None, run, resume=True, overwrite=False).to_dict() == cfg.to_dict()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.txt").write_text("x")
    with pytest.raises(ReslabError, match="not a reslab run directory"):
        check_target(cfg, tmp_path / "foreign", resume=False, overwrite=False)


def test_classification_task_is_the_loops_whole_view_of_the_data():
    import torch

    from reslab.tasks.base import Dist, Runtime
    from reslab.tasks.classification import Classification

    cfg = TrainConfig(dataset="synthetic", iterations=1, batch_size=8, val_split=16, eval_test=True)
    cfg.update({"data_kwargs": {"shape": [1, 8, 8], "num_classes": 3, "train_size": 64, "test_size": 8}})
    task = Classification(cfg.validate(), Runtime(torch.device("cpu"), Dist(), False, None))
    assert task.eval_splits == ("val", "test") and task.selection == "val_error"
    assert (task.info["num_train"], task.info["num_val"], task.info["num_test"]) == (48, 16, 8)
    model = task.build_model(cfg.replace(model="resnet", model_kwargs={"depth": 8}), init=True)
    loss, errors, n = task.forward(model, next(task.loader.batches()))
    assert loss.ndim == 0 and loss.requires_grad and 0 <= int(errors) <= n == 8
    assert task.metric_names == ("error",) and not task.higher_is_better and task.counts_errors
    err = task.evaluate("val", model)["error"]
    assert 0.0 <= err <= 100.0 and err * 16 / 100 == pytest.approx(round(err * 16 / 100))  # a count of 16
    assert task.select({"val": {"error": 30.0}, "test": {"error": 10.0}}, 5.0) == ("val_error", 30.0)
