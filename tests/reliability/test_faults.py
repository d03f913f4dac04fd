"""Faults during training: SIGKILL at seeded points, a full disk, a NaN loss, SIGINT/SIGTERM, two
processes on one run. Each ends with nothing lost: the resumed run equals the uninterrupted one bit for
bit (CPU), and every run directory stays readable.

Kill points are exact, through the engine's test hook ``RESLAB_FAULT`` (:func:`reslab._io.fault_point`).
"""

from __future__ import annotations

import errno
import os
import random
import re
import signal
import time
from pathlib import Path

import yaml
from _forkchild import run as run_child
from _forkchild import start as start_child
from conftest import (
    ARGS,
    CKPT_EVERY,
    EVAL_EVERY,
    ITERATIONS,
    assert_run_readable,
    assert_same_weights,
    metric_rows,
)

from reslab._io import torch_load
from reslab.cli import main
from reslab.train.checkpoint import state_path, weights_path


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("reslab: error:") and "Traceback" not in err[0]
    return err[0]


def _tmp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*.tmp")]


def _assert_equals_reference(run: Path, reference: Path) -> None:
    for name in ("last", "best"):
        assert_same_weights(weights_path(reference, name), weights_path(run, name))
    assert metric_rows(run) == metric_rows(reference)
    assert (run / "train_log.csv").read_text() == (reference / "train_log.csv").read_text()


def kill_plan(seed: int = 2016) -> list[str]:
    """15 faults in training order: 6 SIGKILLs mid-step, 3 during evaluation (the last one the final
    evaluation), 4 between a write's temporary file and its rename, one SIGINT, one SIGTERM. (A write
    kill can land later than the step point after it: that one is then skipped.)"""
    rng = random.Random(seed)
    evals = list(range(EVAL_EVERY, ITERATIONS + 1, EVAL_EVERY))
    free = [k for k in range(1, ITERATIONS - 1) if k not in evals and k + 1 not in evals]
    steps = sorted(rng.sample(free, 8))
    sig = rng.sample(range(8), 2)
    timed = [(k, f"step:{k}:SIGINT" if i == sig[0] else f"step:{k}:SIGTERM" if i == sig[1] else f"step:{k}")
             for i, k in enumerate(steps)]  # fmt: skip
    timed += [(n - 0.5, f"eval:{n}") for n in evals]
    plan = [f for _, f in sorted(timed)]
    for _ in range(4):  # a write kill fires in whichever process comes next, early in it
        plan.insert(rng.randrange(len(plan) + 1), f"write:{rng.randint(1, 8)}")
    return plan


def test_sigkill_at_seeded_points_then_resume_is_bit_identical(reference, tmp_path):
    run = tmp_path / "run"
    log = tmp_path / "log.txt"
    plan = kill_plan()
    assert len(plan) == 15 and sum(":SIG" not in f for f in plan) == 13
    tmp_seen = 0
    fired: list[str] = []
    hit: list[str] = []
    for fault in plan:
        kind, n = fault.split(":")[0], int(fault.split(":")[1])
        at = torch_load(state_path(run, "last"))["step"] if state_path(run, "last").exists() else 0
        if (kind == "step" and at > n) or (kind == "eval" and at >= n):
            continue  # an earlier write kill's process already got past this point
        argv = ["train", "--resume", str(run), "--quiet"] if (run / "config.yaml").exists() else [
            "train", *ARGS, "--out", str(run)]  # fmt: skip
        rc = run_child(argv, fault, log)
        want = 130 if fault.endswith(("SIGINT", "SIGTERM")) else -signal.SIGKILL
        assert rc == want, f"fault {fault}: exit code {rc}, expected {want}\n{log.read_text()[-3000:]}"
        if want == 130:  # a checkpoint of the very step, then a clean exit
            k = int(fault.split(":")[1])
            assert torch_load(state_path(run, "last"))["step"] == k + 1
            assert f"{fault.split(':')[2]}: stopped at step {k + 1}/{ITERATIONS}" in log.read_text()
        assert not (run / "summary.json").exists()
        if (run / "config.yaml").exists():
            assert_run_readable(run)
        tmp_seen += len(_tmp_files(run))
        hit += [p.name for p in _tmp_files(run)]
        fired.append(fault)
    print(f"faults fired: {len(fired)} {fired}; temporary files left by kills: {hit}")
    assert len(fired) >= 12 and sum(":SIG" not in f for f in fired) >= 10, fired
    rc = run_child(["train", "--resume", str(run), "--quiet"], None, log)
    assert rc == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    _assert_equals_reference(run, reference)
    assert assert_run_readable(run) == ITERATIONS
    assert _tmp_files(run) == []  # the temporary files of killed writes are cleaned up on resume
    assert tmp_seen >= 1  # (at least one kill did land between a temporary write and its rename)


class _FullDisk:
    """A file that takes half of what is written, then fails as a full disk does."""

    def __init__(self, f) -> None:
        self.f = f

    def write(self, data) -> int:
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_disk_full_during_checkpoint_keeps_the_previous_one(reference, tmp_path, monkeypatch, capsys):
    import reslab._io as io_mod

    real_fdopen = os.fdopen
    seen = {"n": 0}

    def fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        if ".last.state.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            seen["n"] += 1
            if seen["n"] == 4:  # the 4th checkpoint (step 12) hits a full disk mid-write
                return _FullDisk(f)
        return f

    monkeypatch.setattr(io_mod.os, "fdopen", fdopen)
    run = tmp_path / "full"
    assert main(["train", *ARGS, "--out", str(run)]) == 2
    line = _err_line(capsys)
    assert "No space left on device" in line and "step 9" in line and "--resume" in line, line
    monkeypatch.undo()
    assert seen["n"] == 4
    assert torch_load(state_path(run, "last"))["step"] == 3 * CKPT_EVERY  # the previous checkpoint
    assert_run_readable(run)
    assert _tmp_files(run) == []  # the torn temporary file is removed
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _assert_equals_reference(run, reference)


def test_nan_loss_stops_within_one_step_then_resume_with_lower_lr(tmp_path, monkeypatch, capsys):
    run = tmp_path / "nan"
    monkeypatch.setenv("RESLAB_FAULT", "step:20:nan")
    assert main(["train", *ARGS, "--out", str(run)]) == 2
    line = _err_line(capsys)
    assert "loss is not finite at step 20" in line and f"--resume {run} --lr" in line, line
    monkeypatch.delenv("RESLAB_FAULT")
    last = torch_load(state_path(run, "last"))
    assert last["step"] == 18 and not (run / "summary.json").exists()  # the last good one (every 3)
    assert all(bool(v.isfinite().all()) for v in last["model"].values() if v.is_floating_point())
    before = weights_path(run, "last").read_bytes()

    # An lr that blows up at once (inf, then NaN): stopped within one step, the checkpoint kept.
    assert main(["train", "--resume", str(run), "--lr", "1e30", "--quiet"]) == 2
    line = _err_line(capsys)
    assert re.search(r"not finite at step (18|19)\b", line), line
    assert weights_path(run, "last").read_bytes() == before
    assert torch_load(state_path(run, "last"))["step"] == 18

    # A lower lr continues from it and finishes; the run's config records the new lr.
    assert main(["train", "--resume", str(run), "--lr", "0.01", "--quiet"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 0.01
    s = torch_load(state_path(run, "last"))
    assert s["step"] == ITERATIONS
    assert all(bool(v.isfinite().all()) for v in s["model"].values() if v.is_floating_point())
    # Other settings still cannot change on resume.
    assert main(["train", "--resume", str(run), "--batch-size", "8"]) == 2
    assert "--batch-size cannot be changed" in _err_line(capsys)


def _wait_stopped(pid: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.02)
    raise AssertionError("the first training process never reached its pause point")


def test_second_process_on_the_same_run_is_refused(reference, tmp_path, capsys):
    run = tmp_path / "shared"
    log = tmp_path / "a.txt"
    a = start_child(["train", *ARGS, "--out", str(run)], "step:7:SIGSTOP", log)  # holds the lock, paused
    try:
        _wait_stopped(a.pid)
        files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        # A second real process, and two more attempts from this one (resume, overwrite): all refused.
        rc = run_child(["train", "--resume", str(run), "--quiet"], None, tmp_path / "b.txt")
        b_err = (tmp_path / "b.txt").read_text().strip().splitlines()
        assert rc == 2 and len(b_err) == 1 and f"in use by another reslab process (pid {a.pid})" in b_err[0]
        assert main(["train", "--resume", str(run), "--quiet"]) == 2
        assert "in use by another reslab process" in _err_line(capsys)
        assert main(["train", *ARGS, "--out", str(run), "--overwrite"]) == 2
        assert "in use by another reslab process" in _err_line(capsys)
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files  # nothing touched
    finally:
        os.kill(a.pid, signal.SIGCONT)
        a.join(120)
    assert a.exitcode == 0, log.read_text()[-3000:]
    _assert_equals_reference(run, reference)  # the first run was not disturbed
