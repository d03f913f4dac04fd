"""Hostile and bad input: pickles that would run code, truncated/corrupt/wrong-shape files for every
parser, and output paths that try to leave the chosen folder. Each is refused with one line on stderr and
exit code 2: no traceback, no code run, nothing existing overwritten, nothing written outside."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ARGS

from reslab.cli import main
from reslab.train.checkpoint import state_path, weights_path


class Evil:
    """Unpickling this runs ``exec``: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("reslab: error:") and "Traceback" not in err[0], err[0]
    return err[0]


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def evil(tmp_path):
    """Malicious files in both torch formats (zip and legacy pickle); the payload is shown to be live."""
    marker = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(Evil(marker)))  # control: a plain unpickler does run it
    assert marker.exists()
    marker.unlink()
    files = {}
    files["zip"] = tmp_path / "evil.pt"
    torch.save({"step": 1, "model": Evil(marker), "fc.weight": torch.zeros(2, 2)}, files["zip"])
    files["legacy"] = tmp_path / "evil_legacy.pth"
    files["legacy"].write_bytes(pickle.dumps({"fc.weight": Evil(marker)}, protocol=2))
    files["named_safetensors"] = tmp_path / "evil.safetensors"
    shutil.copy(files["zip"], files["named_safetensors"])
    return marker, files


@pytest.fixture
def run_copy(reference, tmp_path) -> Path:
    """An unfinished copy of the reference run (no summary: resumable)."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    (run / "summary.json").unlink()
    return run


def as_older_reslab(run: Path) -> Path:
    """Make ``run`` look as an older reslab left it: no checksum manifests, no ``prev`` generation. Its
    files are then loaded unverified, so what stands between a bad file and the run is the loaders' own
    checks, which these tests exercise. (With manifests, the checksum refuses such a file first and resume
    falls back to ``prev``: tests/reliability/test_corruption.py.)"""
    for p in run.glob("checkpoints/*"):
        if p.name.endswith(".manifest.json") or p.name.startswith("prev."):
            p.unlink()
    return run


# --------------------------------------------------------------------------- code-running pickles


def test_pickles_that_run_code_are_refused_everywhere(evil, run_copy, tmp_path, capsys):
    marker, files = evil
    img = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(img)
    cases = 0
    # a run directory whose weights file is a pickle (its checksum refuses it before any parser sees it)
    best = weights_path(run_copy, "best").read_bytes()
    shutil.copy(files["zip"], weights_path(run_copy, "best"))
    for argv in (["eval", str(run_copy), "--device", "cpu"], ["predict", str(run_copy), str(img)]):
        assert main(argv) == 2
        _err_line(capsys)
        cases += 1
    weights_path(run_copy, "best").write_bytes(best)
    as_older_reslab(run_copy)  # the state is then loaded unverified: torch.load(weights_only=True) refuses
    for kind, f in files.items():
        # as a training state to resume from
        shutil.copy(f, state_path(run_copy, "last"))
        before = _snapshot(run_copy)
        assert main(["train", "--resume", str(run_copy), "--quiet"]) == 2, kind
        assert "refusing" in _err_line(capsys) or kind == "named_safetensors"
        assert _snapshot(run_copy) == before
        # as --init-from, as the checkpoint of eval / predict / export / analyze / features
        out = tmp_path / f"ft-{kind}"
        assert main(["train", *ARGS, "--init-from", str(f), "--out", str(out)]) == 2, kind
        _err_line(capsys)
        assert not out.exists()
        assert main(["eval", str(f), "--device", "cpu", "--out", str(tmp_path / "ev")]) == 2, kind
        _err_line(capsys)
        assert main(["predict", str(f), str(img)]) == 2, kind
        _err_line(capsys)
        assert main(["export", str(f), "--out", str(tmp_path / "m.onnx")]) == 2, kind
        _err_line(capsys)
        assert main(["features", str(f)]) == 2, kind
        _err_line(capsys)
        cases += 6
    assert cases == 20
    assert not marker.exists()


def test_cifar_batches_that_run_code_are_refused(tmp_path, capsys):
    from reslab.data.cifar import CIFAR10_DIR, cifar_files

    marker = tmp_path / "PWNED"
    d = tmp_path / "data" / CIFAR10_DIR
    d.mkdir(parents=True)
    for name in cifar_files("cifar10"):
        (d / name).write_bytes(pickle.dumps({b"data": Evil(marker), b"labels": [0]}, protocol=2))
    out = tmp_path / "out"
    argv = ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "resnet20",
            "--iterations", "1", "--device", "cpu", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    assert "refusing to unpickle" in _err_line(capsys)
    assert not marker.exists() and not out.exists()


# ------------------------------------------------------------------------------------ bad data files


def _idx(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _fmnist(d: Path, **replace: bytes) -> Path:
    rng = np.random.default_rng(0)
    parts = {
        "train-images-idx3-ubyte": _idx(rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte": _idx(np.arange(40, dtype=np.uint8) % 10),
        "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": _idx(np.arange(20, dtype=np.uint8) % 10),
    }
    parts.update(replace)
    d.mkdir(parents=True, exist_ok=True)
    for name, raw in parts.items():
        (d / f"{name}.gz").write_bytes(gzip.compress(raw) if not name.startswith("!") else raw)
    return d


_GOOD_IMG = _idx(np.zeros((40, 28, 28), np.uint8))
IDX_CASES = {
    "truncated gzip": ("train-images-idx3-ubyte", None),  # handled below: cut the .gz file
    "truncated data": ("train-images-idx3-ubyte", _GOOD_IMG[:-100]),
    "truncated header": ("train-images-idx3-ubyte", _GOOD_IMG[:6]),
    "empty": ("t10k-images-idx3-ubyte", b""),
    "bad magic": ("train-labels-idx1-ubyte", b"\x12\x34" + _idx(np.zeros(40, np.uint8))[2:]),
    "wrong type (float32)": ("train-images-idx3-ubyte", _GOOD_IMG[:2] + b"\x0d" + _GOOD_IMG[3:]),
    "wrong shape (2-D images)": ("train-images-idx3-ubyte", _idx(np.zeros((40, 784), np.uint8))),
    "wrong shape (3x3 images)": ("t10k-images-idx3-ubyte", _idx(np.zeros((20, 3, 3), np.uint8))),
    "labels/images count mismatch": ("train-labels-idx1-ubyte", _idx(np.zeros(39, np.uint8))),
    "label out of range": ("train-labels-idx1-ubyte", _idx(np.full(40, 200, np.uint8))),
    "random bytes": ("t10k-labels-idx1-ubyte", bytes(range(256)) * 3),
    "huge dimension": ("train-images-idx3-ubyte", struct.pack(">HBBIII", 0, 8, 3, 2**31, 2**31, 2**31)),
}


@pytest.mark.parametrize("case", list(IDX_CASES))
def test_bad_idx_files_one_line_exit_2(case, tmp_path, capsys):
    name, raw = IDX_CASES[case]
    d = _fmnist(tmp_path / "fm", **({name: raw} if raw is not None else {}))
    if raw is None:
        gz = d / f"{name}.gz"
        gz.write_bytes(gz.read_bytes()[:-40])
    before = _snapshot(tmp_path)
    out = tmp_path / "out"
    argv = ["train", "--dataset", "fashion-mnist", "--data-dir", str(d), "--model", "resnet",
            "--set", "model_kwargs.depth=8", "--iterations", "1", "--batch-size", "4", "--device", "cpu",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    _err_line(capsys)
    assert not out.exists() and _snapshot(tmp_path) == before


def test_good_idx_files_load(tmp_path):  # the control for the cases above
    from reslab.data import load_dataset

    ds = load_dataset("fashion-mnist", _fmnist(tmp_path / "fm"))
    assert ds.train_x.shape[0] == 40 and ds.test_y.shape[0] == 20


def _cifar_batch(over=None):
    d = {b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10)), b"batch_label": b"x"}
    d.update(over or {})
    return pickle.dumps(d, protocol=2)


CIFAR_CASES = {
    "truncated": _cifar_batch()[:-50],
    "not a dict": pickle.dumps([1, 2, 3], protocol=2),
    "wrong shape": _cifar_batch({b"data": np.zeros((10, 100), np.uint8)}),
    "wrong dtype": _cifar_batch({b"data": np.zeros((10, 3072), np.float64)}),
    "object array": _cifar_batch({b"data": np.array([None] * 10, dtype=object)}),
    "label out of range": _cifar_batch({b"labels": [99] * 10}),
    "labels count mismatch": _cifar_batch({b"labels": [1, 2]}),
    "missing key": pickle.dumps({b"labels": [0]}, protocol=2),
    "random bytes": bytes(range(256)),
}


@pytest.mark.parametrize("case", list(CIFAR_CASES))
def test_bad_cifar_batches_raise_data_error(case, tmp_path):
    from reslab.data import load_dataset
    from reslab.data.cifar import CIFAR10_DIR, CIFAR10_META, CIFAR10_TEST, cifar_files
    from reslab.errors import DataError

    d = tmp_path / CIFAR10_DIR
    d.mkdir()
    for name in cifar_files("cifar10"):
        (d / name).write_bytes(_cifar_batch())
    (d / CIFAR10_META).write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}, 2))
    load_dataset("cifar10", tmp_path)  # control: the good folder loads
    (d / CIFAR10_TEST).write_bytes(CIFAR_CASES[case])
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(e.value)


def test_bad_images_one_line_each_the_good_ones_still_predicted(reference, tmp_path, capsys):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(good)
    raw = good.read_bytes()
    bad = {
        "empty.png": b"",
        "truncated.png": raw[: len(raw) // 2],
        "random.jpg": bytes(range(256)) * 4,
        "text.png": b"not an image\n",
        "bomb.png": raw[:16] + struct.pack(">II", 2**30, 2**30) + raw[24:],
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    # (a folder is no bad input: it stands for its image files, tests/test_newcomer.py)
    files = [str(good), *(str(tmp_path / n) for n in bad), str(tmp_path / "missing.png")]
    assert main(["predict", str(reference), *files, "--topk", "2"]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == len(files) - 1 and all(e.startswith("reslab: error: cannot read image") for e in err)
    assert cap.out.startswith(str(good))


def test_bad_checkpoints_one_line_exit_2(reference, tmp_path, capsys):
    good = weights_path(reference, "best")
    raw = good.read_bytes()
    files = {
        "truncated.safetensors": raw[: len(raw) // 2],
        "header-only.safetensors": raw[:8],
        "empty.safetensors": b"",
        "random.safetensors": bytes(range(256)) * 8,
        "bad-header.safetensors": struct.pack("<Q", 10**12) + raw[8:],
        "truncated.pt": state_path(reference, "last").read_bytes()[:5000],
    }
    from safetensors.torch import save_file

    other = tmp_path / "other-model.safetensors"  # valid file, tensors of another shape
    save_file({"fc.weight": torch.zeros(3, 3)}, str(other), metadata={"model": '"resnet"'})
    paths = [other]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    n = 0
    for p in paths:
        for argv in (["eval", str(p), "--device", "cpu"], ["predict", str(p), str(p)],
                     ["train", *ARGS, "--init-from", str(p), "--out", str(tmp_path / "ft")]):  # fmt: skip
            assert main(argv) == 2, (argv, p)
            _err_line(capsys)
            assert not (tmp_path / "ft").exists()
            n += 1
    assert n == 21


def test_bad_run_config_and_state_on_resume(run_copy, tmp_path, capsys):
    as_older_reslab(run_copy)  # unverified files: the parsers' checks refuse them
    cfg = (run_copy / "config.yaml").read_text()
    state = state_path(run_copy, "last").read_bytes()
    cases = {
        "config.yaml": [b"{{{ not yaml", b"- a list\n", b"lrr: 0.1\n", b"lr: fast\n", b"\xff\xfe\x00bin",
                        b"model: !!python/object/apply:os.system ['touch PWNED']\n"],
        "checkpoints/last.state.pt": [state[:1000], b"", b"PK\x03\x04garbage", torch_bytes([1, 2, 3])],
    }  # fmt: skip
    for rel, contents in cases.items():
        for data in contents:
            (run_copy / rel).write_bytes(data)
            before = _snapshot(run_copy)
            assert main(["train", "--resume", str(run_copy), "--quiet"]) == 2, (rel, data[:20])
            _err_line(capsys)
            assert _snapshot(run_copy) == before
        (run_copy / "config.yaml").write_text(cfg)
        state_path(run_copy, "last").write_bytes(state)
    assert not Path("PWNED").exists()


def torch_bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------------- output paths


def test_names_and_paths_cannot_escape_the_output_folder(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    outside_before = sorted(p.name for p in tmp_path.iterdir())
    recipe = work / "r.yaml"
    for text in ("out: /tmp/x\n", "run_name: ../../etc\n", "out_dir: ../escape\n"):
        recipe.write_text(text)
        assert main(["train", "--recipe", str(recipe), "--iterations", "1"]) == 2
        assert "unknown config key" in _err_line(capsys)
    # model and data set names become the default run directory's name: they must stay inside runs/
    from reslab.train import load_recipe
    from reslab.train.rundir import default_run_dir

    for model in ("../../escape", "/tmp/abs", "..", "a/../../b"):
        cfg = load_recipe("fashion_mnist_demo", model=model, dataset="../../x")
        d = default_run_dir(cfg)
        assert d.parent == Path("runs") and d.resolve().parent == (work / "runs").resolve(), d
        assert main(["train", "--model", model, "--dataset", "synthetic", "--iterations", "1"]) == 2
        _err_line(capsys)
    # an experiment folder whose stored plan names runs outside it is refused by `reslab plot`
    exp = work / "exp"
    exp.mkdir()
    plan = {"experiment": "degradation", "dataset": "synthetic", "budget": "smoke", "depths": [8],
            "seeds": [0], "recipe": "fashion_mnist_demo", "configs": {"../../../evil": {}},
            "runs": [{"name": "../../../evil", "label": "x", "model": "resnet8", "depth": 8, "seed": 0,
                      "family": "resnet", "variant": "resnet"}]}  # fmt: skip
    (exp / "experiment.json").write_text(json.dumps(plan))
    rc = main(["plot", str(exp)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == outside_before
    assert sorted(p.name for p in work.iterdir() if p.name != "runs") == ["exp", "r.yaml"]
    assert not (work / "runs").exists() or list((work / "runs").iterdir()) == []  # (runs/ may stay, empty)


# ---------------------------------------------------- a representative subset through `python -m`


def test_cli_subprocess_one_line_no_traceback(evil, tmp_path):
    marker, files = evil
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("lr: [1, 2\n")
    bad_fm = _fmnist(tmp_path / "fm", **{"train-images-idx3-ubyte": _GOOD_IMG[:-100]})
    cases = [
        (["train", *ARGS, "--init-from", str(files["zip"]), "--out", str(tmp_path / "a")], "refusing"),
        (["eval", str(files["legacy"]), "--device", "cpu"], "evil_legacy.pth"),
        (["train", "--recipe", str(recipe), "--out", str(tmp_path / "b")], "not valid YAML"),
        (["train", "--dataset", "fashion-mnist", "--data-dir", str(bad_fm), "--model", "resnet20",
          "--iterations", "1", "--device", "cpu", "--out", str(tmp_path / "c")], "truncated"),
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "reslab", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for argv, _ in cases
    ]
    for (argv, needle), p in zip(cases, procs):
        _, err = p.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1, (argv, err)
        assert lines[0].startswith("reslab: error:") and needle in lines[0], lines
    assert not marker.exists()
    assert not any((tmp_path / n).exists() for n in "abc")
