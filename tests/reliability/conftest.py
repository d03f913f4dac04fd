"""Shared pieces of the reliability suite: one tiny training config, its uninterrupted reference run, and
checks that a run directory is readable."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

# ResNet-8 on 256 synthetic 3x32x32 images (64 held out for validation): 48 iterations, an evaluation
# every 16 and a checkpoint every 3. Deterministic on CPU with one thread.
ITERATIONS = 48
EVAL_EVERY = 16
CKPT_EVERY = 3
ARGS = [
    "--model", "resnet", "--set", "model_kwargs.depth=8", "--dataset", "synthetic", "--subset", "256",
    "--val-split", "64", "--batch-size", "16", "--iterations", str(ITERATIONS), "--device", "cpu",
    "--seed", "1", "--lr", "0.05", "--set", f"eval_every={EVAL_EVERY}", "--set", "log_every=4",
    "--set", f"checkpoint_every={CKPT_EVERY}", "--set", "eval_subset=64", "--set", "tensorboard=false",
    "--set", "threads=1", "--set", "warmup_iters=0", "--set", "schedule=cosine", "--quiet",
]  # fmt: skip


def safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_weights(a: Path, b: Path) -> None:
    x, y = safetensors(a), safetensors(b)
    assert x.keys() == y.keys()
    for k in x:
        assert x[k].dtype == y[k].dtype and bool((x[k] == y[k]).all()), f"{k} differs: {a} vs {b}"


def metric_rows(run: Path) -> list[list[str]]:
    """metrics.csv without the timing columns (images_per_s, elapsed)."""
    return [r.split(",")[:7] for r in (run / "metrics.csv").read_text().splitlines()]


def assert_run_readable(run: Path) -> int:
    """Every file of a run directory parses (none is torn) and resume has a sound checkpoint to continue
    from (``last`` or ``prev``: a kill between a save's files leaves ``last`` ahead of its manifest);
    returns the step of ``last.state.pt`` (0 if none yet)."""
    import yaml
    from safetensors import safe_open

    from reslab._io import torch_load
    from reslab.train.checkpoint import state_path, weights_path
    from reslab.train.verify import verify_run

    assert not verify_run(run).resume.startswith("refuse"), verify_run(run).lines()

    assert isinstance(yaml.safe_load((run / "config.yaml").read_text()), dict)
    for name in ("metrics.csv", "train_log.csv"):
        if (run / name).exists():
            with open(run / name, newline="") as f:
                rows = list(csv.reader(f))
            assert all(len(r) == len(rows[0]) for r in rows), f"{name} has a torn row"
    step = 0
    for name in ("last", "best"):
        if state_path(run, name).exists():
            s = torch_load(state_path(run, name))
            assert isinstance(s["step"], int)
            step = s["step"] if name == "last" else step
        if weights_path(run, name).exists():
            with safe_open(str(weights_path(run, name)), framework="pt") as f:
                assert "step" in (f.metadata() or {})
    return step


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every faulted run must reproduce bit for bit."""
    from reslab.cli import main

    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(["train", *ARGS, "--out", str(run)]) == 0
    return run


STOP_AT = 40  # the interrupted run stops after step 40: last = step 41 (SIGINT checkpoint), prev = step 39


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def lines(capsys) -> tuple[str, list[str]]:
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return cap.out, cap.err.strip().splitlines()


def err_line(capsys) -> str:
    _, err = lines(capsys)
    assert len(err) == 1 and err[0].startswith("reslab: error:"), err
    return err[0]


def invert(path: Path, where: str, n: int = 64) -> None:
    """Invert ``n`` bytes of ``path`` at ``start``, ``header`` (bytes 8.., inside the safetensors JSON
    header / the zip's first entry header / the manifest's first field), ``middle`` or ``end``."""
    data = bytearray(path.read_bytes())
    at = {"start": 0, "header": 8, "middle": len(data) // 2 - n // 2, "end": len(data) - n}[where]
    n = min(n, len(data) - at)
    data[at : at + n] = bytes(b ^ 0xFF for b in data[at : at + n])
    path.write_bytes(bytes(data))


@pytest.fixture(scope="session")
def interrupted(tmp_path_factory) -> Path:
    """The reference run's config, stopped by SIGINT during step 40 (a checkpoint of step 41 is written).
    Tests copy it (:func:`copy_tree`) before they change anything."""
    from reslab._io import torch_load
    from reslab.cli import main
    from reslab.train.checkpoint import state_path

    run = tmp_path_factory.mktemp("interrupted") / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("RESLAB_FAULT", f"step:{STOP_AT}:SIGINT")
    try:
        assert main(["train", *ARGS, "--out", str(run)]) == 130
    finally:
        mp.undo()
    assert torch_load(state_path(run, "last"))["step"] == STOP_AT + 1
    assert torch_load(state_path(run, "prev"))["step"] == STOP_AT - 1
    return run


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
