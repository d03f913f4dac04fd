"""MedMNIST (issue 35; Yang et al. 2023): tiny files written in exactly the published ``.npz`` format (the
``medmnist`` package's own Dataset classes read them: the check that the format is the real one) train,
evaluate and predict through the command line, 2D (multi-class colour, binary grey, multi-label) and 3D
(the video task); AUC and ACC agree with ``medmnist.evaluator``'s ``getAUC`` / ``getACC``; unknown flags,
missing and corrupt files are one line. Nothing is downloaded."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

medmnist = pytest.importorskip("medmnist", reason="the medmnist package (pip install 'reslab[medical]')")
from medmnist.evaluator import getACC, getAUC  # noqa: E402
from medmnist.info import INFO  # noqa: E402

from reslab.cli import main  # noqa: E402
from reslab.data import load_medmnist, unpack_labels  # noqa: E402
from reslab.tasks.medical import auc_acc  # noqa: E402

SIZES = {"train": 24, "val": 16, "test": 16}
SHORT = ["--iterations", "2", "--device", "cpu", "--seed", "1", "--set", "eval_every=2", "--set",
         "checkpoint_every=2", "--set", "threads=1", "--set", "tensorboard=false", "--set", "log_every=1",
         "--set", "milestones=[]", "--quiet"]  # fmt: skip
# the runs: (flag, the recipe and what makes it tiny)
RUNS = {
    "pathmnist": ["--recipe", "medmnist", "--model", "resnet20", "--batch-size", "8"],
    "pneumoniamnist": ["--dataset", "medmnist", "--set", "dataset_kwargs.flag=pneumoniamnist", "--model",
                       "resnet20", "--batch-size", "8"],
    "chestmnist": ["--recipe", "medmnist", "--model", "resnet20", "--batch-size", "8"],
    "organmnist3d": ["--recipe", "medmnist3d", "--model", "video_resnet", "--set", "model_kwargs.depth=10",
                     "--set", "model_kwargs.width=4", "--batch-size", "4"],
}  # fmt: skip


def write_medmnist(root: Path, flag: str, size: int = 28, seed: int = 0) -> Path:
    """``{flag}.npz`` as published: uint8 images (N, S, S) grey, (N, S, S, 3) colour, (N, S, S, S) 3D;
    uint8 labels (N, 1), or (N, 14) zeros and ones for ChestMNIST. The images carry their label (a bright
    square whose place is the class) so that a tiny run has something to learn."""
    info, rng = INFO[flag], np.random.default_rng(seed)
    c, k = info["n_channels"], len(info["label"])
    arrays = {}
    for split, n in SIZES.items():
        if info["task"] == "multi-label, binary-class":
            y = (rng.random((n, k)) < 0.3).astype(np.uint8)
        else:
            y = (np.arange(n) % k).astype(np.uint8)[rng.permutation(n)][:, None]
        shape = (n, size, size, size) if flag.endswith("3d") else (n, size, size) + ((c,) if c > 1 else ())
        x = rng.integers(0, 60, shape, dtype=np.uint8)
        for i in range(n):  # rows 2j, 2j+1 of the first 4 columns (of every slice) bright for class j
            j = int(y[i].argmax() if y.shape[1] > 1 else y[i, 0])
            if c == 3:
                x[i, 2 * j : 2 * j + 2, :4, :] = 250
            else:
                x[i, ..., 2 * j : 2 * j + 2, :4] = 250
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    root.mkdir(parents=True, exist_ok=True)
    path = root / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    """No data of this machine's: the cache, $RESLAB_DATA and ~/.medmnist all point into tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("RESLAB_DATA", raising=False)
    return tmp_path


def _call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------ the format


@pytest.mark.parametrize("flag", ["pathmnist", "pneumoniamnist", "chestmnist", "retinamnist", "organmnist3d"])
def test_files_in_the_published_format_load_as_the_package_reads_them(flag, home):
    path = write_medmnist(home / "data", flag)
    ds = load_medmnist(flag, data_dir=home / "data")
    info = INFO[flag]
    assert ds.source == str(path) and ds.classes == [info["label"][str(i)] for i in range(len(info["label"]))]
    assert ds.multi_label == (flag == "chestmnist") and ds.flip is False
    cls = getattr(medmnist, info["python_class"])
    for split in ("train", "val", "test"):
        ref = cls(split=split, root=str(home / "data"))  # the package's own reader of the same file
        x, y = getattr(ds, f"{split}_x"), getattr(ds, f"{split}_y")
        assert x.dtype == torch.uint8 and y.dtype == torch.int64 and len(x) == SIZES[split]
        want = (
            ref.imgs[:, None]
            if flag.endswith("3d") or info["n_channels"] == 1
            else ref.imgs.transpose(0, 3, 1, 2)
        )
        assert np.array_equal(x.numpy(), want)
        labels = unpack_labels(y, 14).numpy() if ds.multi_label else y.numpy()[:, None]
        assert np.array_equal(labels, ref.labels.astype(np.int64))
        if flag.endswith("3d"):  # the package hands out (1, D, H, W) in [0, 1]: reslab's volume, / 255
            assert np.allclose(ref[0][0], x[0].numpy() / 255.0)


def test_larger_sizes_use_the_package_naming(home):
    write_medmnist(home / "data", "breastmnist", size=64)
    ds = load_medmnist("breastmnist", size=64, data_dir=home / "data")
    assert ds.input_size == (1, 64, 64) and ds.source.endswith("breastmnist_64.npz")


# ----------------------------------------------------------------------------------------- the metrics


@pytest.mark.parametrize(
    "task,k",
    [("multi-class", 9), ("binary-class", 2), ("ordinal-regression", 5), ("multi-label, binary-class", 14)],
)
def test_auc_and_acc_are_medmnist_evaluators(task, k):
    rng = np.random.default_rng(3)
    n = 200
    if task.startswith("multi-label"):
        y = (rng.random((n, k)) < 0.4).astype(np.int64)
        scores = np.clip(y * 0.3 + rng.random((n, k)) * 0.7, 0, 1)
    else:
        y = rng.integers(0, k, n)
        logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
        scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        scores = np.round(scores, 2)  # ties, counted half by both
    r = auc_acc(y, scores, task.startswith("multi-label"))
    yt = y if y.ndim == 2 else y[:, None]
    assert r["auc"] == pytest.approx(getAUC(yt, scores, task), abs=1e-12)
    assert r["acc"] == pytest.approx(getACC(yt, scores, task), abs=1e-12)
    assert 0.6 < r["auc"] < 1.0  # informative scores: far from chance, and not a tautology


def test_an_auc_undefined_on_a_small_set_is_left_out_and_counted():
    y = np.array([0, 0, 1, 1])  # class 2 never occurs: its one-vs-rest AUC is undefined
    scores = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.4, 0.3]])
    r = auc_acc(y, scores, multi_label=False)
    assert r["auc_undefined"] == 1 and r["auc"] == pytest.approx(1.0) and r["acc"] == 1.0


def test_the_benchmark_resnet18_28_is_resnet18_with_the_cifar_stem():
    from reslab.models import create_model

    m = create_model("resnet18", stem="cifar", num_classes=10, in_chans=3)
    # kuangliu/pytorch-cifar's ResNet18 (MedMNIST/experiments' ResNet-18 (28)) has 11,173,962 parameters
    assert sum(p.numel() for p in m.parameters()) == 11_173_962
    assert m(torch.zeros(1, 3, 28, 28)).shape == (1, 10)


# ------------------------------------------------------------------------ train, eval, predict (CLI)


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("flag", list(RUNS))
def test_a_tiny_run_trains_evaluates_and_predicts(flag, home):
    data, run = home / "data", home / "run"
    write_medmnist(data, flag)
    argv = ["train", *RUNS[flag], *SHORT, "--data-dir", str(data), "--out", str(run)]
    if "--recipe" in RUNS[flag]:
        argv += ["--set", f"data_kwargs.flag={flag}"]
    code, _, err = _call(argv)
    assert code == 0, err
    rows = _metrics(run)
    assert {"val_error", "val_auc", "test_error", "test_auc"} <= set(rows[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metric_names"] == ["error", "auc"]

    code, out, err = _call(["eval", str(run), "--device", "cpu"])
    assert code == 0, err
    result = json.loads((run / "eval.json").read_text())
    m = result["medmnist"]
    assert m["flag"] == flag and m["task"] == INFO[flag]["task"] and m["license"] == INFO[flag]["license"]
    assert f"val: AUC {result['val']['auc']:.4f}  ACC {result['val']['acc']:.4f}" in out
    # the training run's evaluation and reslab eval's: the same checkpoint, the same split, the same numbers
    assert float(rows[-1]["val_auc"]) == pytest.approx(result["val"]["auc"], abs=1e-4)
    assert float(rows[-1]["val_error"]) == pytest.approx(result["val"]["error"], abs=1e-4)
    assert result["val"]["error"] == pytest.approx(100 * (1 - result["val"]["acc"]))

    if not flag.endswith("3d"):  # no flipped views of scans
        assert "evaluated as trained" in _one_line(["eval", str(run), "--tta", "flip", "--device", "cpu"])
    needle = "reslab analyze measures" if flag.endswith("3d") else "does not read MedMNIST data yet"
    assert needle in _one_line(["analyze", "lesion", str(run), "--device", "cpu", "--out", str(home / "an")])

    files = _inputs(data / f"{flag}.npz", home)
    code, out, err = _call(["predict", str(run), *files, "--device", "cpu", "--topk", "2", "--json"])
    assert code == 0, err
    found = json.loads(out)["predictions"]
    names = list(INFO[flag]["label"].values())
    assert [p["file"] for p in found] == files and all(t["class"] in names for p in found for t in p["top"])
    if flag == "chestmnist":  # one sigmoid per label: the probabilities need not sum to 1
        assert found[0]["multi_label"] is True
    if flag.endswith("3d"):  # the same volume as uint8 and as the package's floats in [0, 1]
        (a, b) = ([(t["class"], t["prob"]) for t in p["top"]] for p in found)
        assert [c for c, _ in a] == [c for c, _ in b] and [q for _, q in a] == pytest.approx(
            [q for _, q in b]
        )


def _inputs(npz: Path, home: Path) -> list[str]:
    """A test image as PNG (2D) or a test volume as .npy, uint8 and in [0, 1] (3D)."""
    from PIL import Image

    x = np.load(npz)["test_images"][0]
    if x.ndim == 3 and x.shape[-1] != 3:
        np.save(home / "volume.npy", x)
        np.save(home / "volume01.npy", x.astype(np.float32) / 255)
        return [str(home / "volume.npy"), str(home / "volume01.npy")]
    Image.fromarray(x).save(home / "image.png")
    return [str(home / "image.png")]


# ------------------------------------------------------------------------------------ one-line errors


def _one_line(argv: list[str]) -> str:
    code, _, err = _call(argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _train(data: Path, out: Path, *sets: str) -> list[str]:
    return ["train", "--dataset", "medmnist", *(a for s in sets for a in ("--set", s)), "--model", "resnet20",
            *SHORT, "--data-dir", str(data), "--out", str(out)]  # fmt: skip


def test_unknown_flag_missing_and_corrupt_files_are_one_line(home):
    data, out = home / "data", home / "run"
    line = _one_line(_train(data, out, "data_kwargs.flag=pathmnst"))
    assert "unknown MedMNIST flag 'pathmnst'" in line and "did you mean pathmnist" in line

    line = _one_line(_train(data, out, "data_kwargs.flag=dermamnist"))
    assert "dermamnist.npz not found" in line and "--download" in line and INFO["dermamnist"]["url"] in line

    data.mkdir(parents=True)
    (data / "bloodmnist.npz").write_bytes(write_medmnist(home / "ok", "bloodmnist").read_bytes()[:500])
    line = _one_line(_train(data, out, "data_kwargs.flag=bloodmnist"))
    assert "bloodmnist.npz is not a readable .npz file" in line

    np.savez(data / "octmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    assert "is not a MedMNIST file: no train_labels" in _one_line(
        _train(data, out, "data_kwargs.flag=octmnist")
    )

    arrays = dict(np.load(write_medmnist(home / "ok", "breastmnist")))
    arrays["train_images"] = arrays["train_images"].astype(np.float32)
    np.savez(data / "breastmnist.npz", **arrays)
    assert "expected uint8 (N, 28, 28)" in _one_line(_train(data, out, "data_kwargs.flag=breastmnist"))

    assert "data_kwargs.flag=pathmnist" in _one_line(_train(data, out))  # no flag
    assert "sizes 28, 64" in _one_line(
        _train(data, out, "data_kwargs.flag=organmnist3d", "data_kwargs.size=128")
    )
    write_medmnist(data, "nodulemnist3d")
    assert "--task video" in _one_line(_train(data, out, "data_kwargs.flag=nodulemnist3d"))
    assert not out.exists(), "nothing half-written"


def test_download_fetches_the_packages_url_and_md5_into_data_dir(home, monkeypatch):
    """--download hands INFO's URL and MD5 to torchvision's download_url (faked here: nothing is fetched)."""
    import torchvision.datasets.utils as tv

    asked = []

    def fake_download_url(url, root, filename=None, md5=None):
        asked.append((url, filename, md5))
        write_medmnist(Path(root), "bloodmnist", size=64)

    monkeypatch.setattr(tv, "download_url", fake_download_url)
    data = home / "fetched"
    assert "not found" in _one_line(
        _train(data, home / "r0", "data_kwargs.flag=bloodmnist", "data_kwargs.size=64")
    )
    assert not asked  # no download without the flag
    ds = load_medmnist("bloodmnist", size=64, data_dir=data, download=True)
    assert asked == [(INFO["bloodmnist"]["url_64"], "bloodmnist_64.npz", INFO["bloodmnist"]["MD5_64"])]
    assert ds.input_size == (3, 64, 64) and ds.source == str(data / "bloodmnist_64.npz")


def test_recipes_carry_the_benchmarks_training_and_the_alias_sets_data_kwargs():
    """MedMNIST/experiments' train_and_eval_pytorch.py (2D and 3D): Adam lr 0.001, 100 epochs, milestones at
    50% and 75% of them, gamma 0.1; batch 128 (2D) and 32 (3D); the 2D network ResNet-18 (28)."""
    from reslab.train import load_recipe

    for name, batch in (("medmnist", 128), ("medmnist3d", 32)):
        c = load_recipe(name).validate()
        assert (c.optimizer, c.lr, c.weight_decay, c.batch_size, c.epochs) == (
            "adamw",
            0.001,
            0.0,
            batch,
            100,
        )
        assert (c.schedule, c.milestones, c.gamma, c.augment, c.dataset) == (
            "step",
            [50, 75],
            0.1,
            False,
            "medmnist",
        )
    assert load_recipe("medmnist").model_kwargs == {"stem": "cifar"}
    c = load_recipe("medmnist").replace(**{"dataset_kwargs.flag": "chestmnist"})
    assert c.data_kwargs == {"flag": "chestmnist"}
