"""``reslab train --task video|super-resolution`` end to end through the command line: tiny real runs
(Moving Fashion-MNIST clips; the scikit-image photographs) get the run directory with the task's metric
columns, resume bit-identically after a kill, are evaluated by ``reslab eval`` (video: error, garment and
direction accuracy; super-resolution: PSNR / SSIM against bicubic, per photograph), and ``reslab predict``
upscales image files (a video run's refusal is one line)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reslab.cli import main

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_data = pytest.mark.skipif(
    not (SYSTEM_FMNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)",
)
COMMON = [
    "--iterations", "6", "--device", "cpu", "--seed", "1", "--set", "eval_every=3", "--set", "log_every=1",
    "--set", "checkpoint_every=2", "--set", "threads=1", "--set", "tensorboard=false", "--set", "warmup_iters=2",
]  # fmt: skip
TINY = {
    "video": [
        "--batch-size", "4", "--val-split", "8", "--data-dir", str(SYSTEM_FMNIST),
        "--set", "task_kwargs.train_clips=32", "--set", "task_kwargs.test_clips=8", "--set", "task_kwargs.frames=4",
        "--set", "model_kwargs.width=4",
    ],
    "super-resolution": ["--batch-size", "2", "--set", "model_kwargs.units=2", "--set", "model_kwargs.width=8"],
}  # fmt: skip
COLUMNS = {
    "video": ("error", "garment_error", "direction_error", "loss"),
    "super-resolution": ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim"),
}


@pytest.fixture(autouse=True)
def clip_cache(tmp_path_factory, monkeypatch):
    """Clips are cached under $XDG_CACHE_HOME: one folder for the whole module, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("task", ["video", "super-resolution"])
def test_tiny_run_resumes_bit_identically_and_evaluates(task, tmp_path, capsys):
    if task == "video" and not (SYSTEM_FMNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
    from safetensors.torch import load_file

    args = ["train", "--task", task, *COMMON, *TINY[task], "--quiet"]
    ref = tmp_path / "ref"
    assert main([*args, "--out", str(ref)]) == 0, capsys.readouterr().err
    rows = _rows(ref / "metrics.csv")
    assert [r["step"] for r in rows] == ["3", "6"]
    for split in ("val", "test"):
        for m in COLUMNS[task]:
            assert np.isfinite(float(rows[-1][f"{split}_{m}"])), (split, m)
    assert (rows[-1]["train_error"] == "") == (task == "super-resolution")  # SR counts no errors

    run = tmp_path / "killed"  # killed in step 5: the checkpoint of step 4 is the last one
    env = dict(os.environ, RESLAB_FAULT="step:4")
    proc = subprocess.run([sys.executable, "-m", "reslab", *args, "--out", str(run)], env=env, timeout=300)
    assert proc.returncode != 0 and not (run / "summary.json").exists()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    a = load_file(ref / "checkpoints" / "last.safetensors")
    b = load_file(run / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    assert (ref / "train_log.csv").read_text() == (run / "train_log.csv").read_text()

    capsys.readouterr()
    assert main(["eval", str(ref), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert (ref / "eval.json").is_file()
    if task == "video":
        assert "garment accuracy" in out and "direction accuracy" in out and "(8 clips)" in out
    else:
        assert "bicubic" in out and "chelsea" in out and "coffee" in out and "astronaut-bottom" in out


def test_predict_upscales_image_files(tmp_path, capsys):
    from PIL import Image

    run = tmp_path / "sr"
    args = ["train", "--task", "super-resolution", *COMMON, *TINY["super-resolution"], "--quiet"]
    assert main([*args, "--iterations", "2", "--set", "eval_every=2", "--out", str(run)]) == 0
    grey, rgb = tmp_path / "grey.png", tmp_path / "rgb.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 12), dtype=np.uint8)).save(grey)
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(rgb)

    one = tmp_path / "up.png"
    assert main(["predict", str(run), str(grey), "--out", str(one)]) == 0
    with Image.open(one) as im:
        assert im.size == (48, 40) and im.mode == "L"
    assert main(["predict", str(run), str(grey), "--out", str(one)]) == 2  # exists: refused, kept
    assert "--overwrite" in capsys.readouterr().err
    folder = tmp_path / "ups"
    assert (
        main(["predict", str(run), str(grey), str(rgb), str(tmp_path / "missing.png"), "--out", str(folder)])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.png" in err[0]
    with Image.open(folder / "rgb_x4.png") as im:
        assert im.size == (28, 36) and im.mode == "RGB"
    assert (folder / "grey_x4.png").is_file()
    assert main(["predict", str(run), str(grey)]) == 2
    assert "--out" in capsys.readouterr().err


@needs_data
def test_video_predict_is_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "video"
    args = ["train", "--task", "video", *COMMON, *TINY["video"], "--quiet"]
    assert main([*args, "--iterations", "1", "--set", "eval_every=0", "--out", str(run)]) == 0
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
    capsys.readouterr()
    assert main(["predict", str(run), str(image)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reslab eval" in err[0]
