"""``reslab train --task detection|segmentation`` through the engine's task seam: tiny real runs on
Fashion-MNIST scenes get classification's run directory (metrics.csv with the task's columns, checkpoints,
summary), resume bit-identically after a kill, and are evaluated (``reslab eval``) and drawn
(``reslab predict --out``); bad settings are one line; classification's columns are unchanged."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reslab.cli import main

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_data = pytest.mark.skipif(
    not (SYSTEM_FMNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)",
)

# A tiny but real run: a CIFAR ResNet-8 backbone, 12 scenes of 32x32 (4 held out), 4 test scenes.
SCENES = [
    "--set", "task_kwargs.train_size=12", "--set", "task_kwargs.test_size=4", "--set", "task_kwargs.size=32",
    "--set", "task_kwargs.min_scale=10", "--set", "task_kwargs.max_scale=20", "--set", "task_kwargs.max_objects=2",
]  # fmt: skip
TINY = [
    "--model", "resnet", "--set", "model_kwargs.depth=8", *SCENES, "--val-split", "4", "--batch-size", "2",
    "--iterations", "6", "--device", "cpu", "--seed", "1", "--set", "eval_every=3", "--set", "log_every=1",
    "--set", "checkpoint_every=2", "--set", "threads=1", "--set", "tensorboard=false", "--set", "warmup_iters=2",
    "--data-dir", str(SYSTEM_FMNIST),
]  # fmt: skip
HEAD = {
    "detection": ["--set", "task_kwargs.fpn_channels=16"],
    "segmentation": ["--set", "task_kwargs.arch=fcn"],
}
COLUMNS = {
    "detection": ("map_50", "map", "map_75", "mar_100"),
    "segmentation": ("miou", "miou_fg", "pixel_acc"),
}


@pytest.fixture(autouse=True)
def scene_cache(tmp_path_factory, monkeypatch):
    """Scenes are cached under $XDG_CACHE_HOME: one folder for the whole module, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_classification_metrics_columns_are_unchanged():
    from reslab.train.engine import METRICS_COLUMNS
    from reslab.train.rundir import metrics_columns

    want = (
        "step",
        "epoch",
        "lr",
        "train_loss",
        "train_error",
        "val_error",
        "test_error",
        "images_per_s",
        "elapsed",
    )
    assert METRICS_COLUMNS == want == metrics_columns(("error",))
    assert metrics_columns(("miou", "pixel_acc"))[5:9] == (
        "val_miou",
        "val_pixel_acc",
        "test_miou",
        "test_pixel_acc",
    )


@needs_data
@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_tiny_run_eval_and_predict(task, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", task, *TINY, *HEAD[task], "--out", str(run), "--quiet"]) == 0
    for name in ("config.yaml", "metrics.csv", "train_log.csv", "summary.json", "curves.png"):
        assert (run / name).is_file(), name
    for gen in ("last", "prev", "best"):
        for suffix in ("safetensors", "state.pt", "manifest.json"):
            assert (run / "checkpoints" / f"{gen}.{suffix}").is_file(), (gen, suffix)

    rows = _rows(run / "metrics.csv")
    cols = [f"{s}_{m}" for s in ("val", "test") for m in COLUMNS[task]]
    assert list(rows[0]) == [
        "step",
        "epoch",
        "lr",
        "train_loss",
        "train_error",
        *cols,
        "images_per_s",
        "elapsed",
    ]
    assert [r["step"] for r in rows] == ["3", "6"]
    for r in rows:
        assert r["train_error"] == ""  # the step counts no wrong predictions
        assert all(math.isfinite(float(r[c])) and 0 <= float(r[c]) <= 1 for c in cols)
        assert math.isfinite(float(r["train_loss"]))
    log = _rows(run / "train_log.csv")
    assert len(log) == 6 and all(r["error"] == "" and float(r["loss"]) > 0 for r in log)

    summary = json.loads((run / "summary.json").read_text())
    primary = COLUMNS[task][0]
    assert summary["task"] == task and summary["metric_names"] == list(COLUMNS[task])
    assert summary["best"]["metric"] == f"val_{primary}" and "test_accuracy" not in summary
    assert summary["final"][f"test_{primary}"] == pytest.approx(float(rows[-1][f"test_{primary}"]), abs=1e-5)
    assert summary["dataset"] == "fashion-mnist-scenes"

    # The weights file rebuilds the model from its own spec.
    from reslab.models.dense import load_dense

    model, meta = load_dense(run)
    assert (
        model.spec["task"] == task and meta["config"]["task"] == task and meta["classes"][0] == "background"
    )
    capsys.readouterr()

    # reslab eval: every metric, per class, eval.json.
    out = tmp_path / "eval"
    assert main(["eval", str(run), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "eval.json").read_text())
    assert res["task"] == task and res["test"]["n"] == 4 and res["val"]["n"] == 4
    assert primary in printed and "trouser" in printed.lower()
    per = res["test"]["per_class"]
    assert len(per) == (10 if task == "detection" else 11)
    # the same weights and scenes as the run's last evaluation of the best checkpoint: the same number
    assert res["val"][primary] == pytest.approx(summary["best"]["value"], abs=1e-5)

    # reslab predict --out: a drawing, the detections / classes printed; an existing file is refused.
    from PIL import Image

    from reslab.data.scenes import load_scenes

    scenes = load_scenes(12, 4, config=_scene_config(), data_dir=SYSTEM_FMNIST)
    image = tmp_path / "scene.png"
    Image.fromarray(scenes.test.images[0, 0].numpy()).save(image)
    drawn = tmp_path / "drawn.png"
    assert main(["predict", str(run), str(image), "--out", str(drawn), "--score-threshold", "0"]) == 0
    text = capsys.readouterr().out
    assert str(drawn) in text and (
        "detections" in text if task == "detection" else "share of the pixels" in text
    )
    with Image.open(drawn) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    assert main(["predict", str(run), str(image), "--out", str(drawn)]) == 2
    assert "--overwrite" in _err_line(capsys)


def _scene_config():
    from reslab.data.scenes import SceneConfig

    return SceneConfig(size=32, min_scale=10, max_scale=20, max_objects=2)


@needs_data
@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_resume_after_a_kill_is_bit_identical(task, tmp_path):
    """Detection starts its backbone from a classifier's weights file (frozen BNs, 3 trainable groups):
    the resumed run rebuilds that architecture too."""
    args = ["train", "--task", task, *TINY, *HEAD[task], "--quiet"]
    if task == "detection":
        from reslab.models import create_model
        from reslab.models.weights import save_weights

        classifier = tmp_path / "classifier.safetensors"
        save_weights(create_model("resnet", depth=8, in_chans=1, num_classes=10), classifier)
        args += ["--init-from", str(classifier)]
    ref = tmp_path / "ref"
    assert main([*args, "--out", str(ref)]) == 0

    run = tmp_path / "killed"  # killed in step 5 (the checkpoint of step 4 is the last one)
    env = dict(os.environ, RESLAB_FAULT="step:4")
    proc = subprocess.run([sys.executable, "-m", "reslab", *args, "--out", str(run)], env=env, timeout=300)
    assert proc.returncode != 0 and not (run / "summary.json").exists()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0

    a = _tensors(ref / "checkpoints" / "last.safetensors")
    b = _tensors(run / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and bool((a[k] == b[k]).all()), k
    ra, rb = _rows(ref / "metrics.csv"), _rows(run / "metrics.csv")
    skip = ("images_per_s", "elapsed")
    assert [{k: v for k, v in r.items() if k not in skip} for r in ra] == [
        {k: v for k, v in r.items() if k not in skip} for r in rb
    ]
    assert (ref / "train_log.csv").read_text() == (run / "train_log.csv").read_text()
    if task == "detection":
        from reslab.models.dense import dense_spec

        assert dense_spec(run)["frozen_bn"] is True and dense_spec(run)["trainable_layers"] == 3


@needs_data
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--task", "tracking"], "--task must be one of"),
        (["--task", "detection", "--set", "task_kwargs.archh=retinanet"], "unknown option 'archh'"),
        (["--task", "detection", "--set", "task_kwargs.arch=deeplabv3"], "detection takes fasterrcnn"),
        (["--task", "segmentation", "--model", "r3d_18"], "r3d_18 is a video-classification model"),
        (["--task", "segmentation", "--model", "resnet21"], "unknown model"),
        (["--task", "detection", "--freeze", "layer1"], "task_kwargs.trainable_layers"),
        (["--task", "detection", "--val-split", "0"], "set val_split"),
        (["--task", "detection", "--dataset", "cifar10"], "draws its scenes from fashion-mnist"),
        (
            ["--task", "segmentation", "--set", "channels_last=true"],
            "channels_last applies to classification",
        ),
    ],
)
def test_bad_settings_are_one_line(argv, needle, tmp_path, capsys):
    assert main(["train", *argv, "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet"]) == 2
    line = _err_line(capsys)
    assert needle in line and line.startswith("reslab: error:"), line
    assert not (tmp_path / "run").exists()


@needs_data
def test_resume_keeps_the_task(tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "--task",
        "segmentation",
        *TINY,
        *HEAD["segmentation"],
        "--iterations",
        "2",
        "--set",
        "eval_every=2",
    ]
    assert main(["train", *args, "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--task", "detection"]) == 2
    assert "--task cannot be changed" in _err_line(capsys)
    from reslab.train import train
    from reslab.train.rundir import stored_config

    cfg = stored_config(run)
    cfg.task = "detection"
    with pytest.raises(Exception, match="task='segmentation'"):
        train(cfg, run, resume=True, progress=False)
