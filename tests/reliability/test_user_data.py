"""Nothing a user owns is ever deleted, nothing unverified is ever trusted (issue 28): each case was a hole
before, and is here as it was reported, ending in a one-line refusal or a correct recovery.

1. ``--overwrite`` (and a plain ``--out``) on a folder that is not reslab's run; ``reproduce --out``/
   ``--publish`` on a user's folder; ``predict --out`` over a file reslab did not draw or over an input.
2. An edited ``config.yaml`` on resume.
3. A damaged ``train_log.csv`` / ``metrics.csv`` on resume.
4. Removed manifests: this reslab's checkpoints are then unverifiable, not "older".
5. A damaged ``best`` on resume: repaired, re-selected, or removed, and said.
6. Out of memory: one line, the checkpoint intact.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import ARGS, CKPT_EVERY, ITERATIONS, STOP_AT, copy_tree, err_line, invert, lines, snapshot

from reslab._io import truncate_log
from reslab.cli import main
from reslab.manifest import check_generation
from reslab.train.checkpoint import state_path, weights_path
from reslab.train.verify import verify_run

TINY = ["--model", "resnet20", "--dataset", "synthetic", "--iterations", "4", "--set", "eval_every=0",
        "--set", "threads=1", "--set", "tensorboard=false", "--quiet"]  # fmt: skip


def _user_folder(root: Path) -> Path:
    u = root / "u"
    (u / "src").mkdir(parents=True)
    (u / "data").mkdir()
    (u / "config.yaml").write_text("name: my-project\n")
    (u / "src" / "main.py").write_text("x\n")
    (u / "data" / "results.csv").write_text("y\n")
    (u / "README.md").write_text("r\n")
    return u


# ------------------------------------------------------------------ 1. a user's folder is never touched


@pytest.mark.parametrize("flags", [["--overwrite"], []], ids=["overwrite", "plain"])
def test_a_users_folder_with_a_config_yaml_is_refused_untouched(tmp_path, capsys, flags):
    u = _user_folder(tmp_path)
    before = snapshot(u)
    assert main(["train", *TINY, "--out", str(u), *flags]) == 2
    line = err_line(capsys)
    assert "is not a reslab run directory" in line and "README.md" in line, line
    assert snapshot(u) == before and sorted(p.name for p in u.iterdir()) == sorted(
        ["README.md", "config.yaml", "data", "src"]
    )


def test_a_users_dot_tmp_file_is_not_taken_for_reslabs_litter(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / ".draft.tmp").write_text("a draft\n")
    assert main(["train", *TINY, "--out", str(d)]) == 2
    assert ".draft.tmp" in err_line(capsys)
    assert (d / ".draft.tmp").read_text() == "a draft\n"


def test_overwrite_removes_only_the_runs_own_files_and_refuses_a_foreign_one(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    marker = json.loads((run / "reslab-run.json").read_text())
    assert marker["format"] == "reslab-run" and "config.yaml" in marker["files"]
    (run / "notes.txt").write_text("mine\n")
    (run / "checkpoints" / "my-best.pt").write_text("mine too\n")
    before = snapshot(run)
    assert main(["train", *TINY, "--out", str(run), "--overwrite"]) == 2
    line = err_line(capsys)
    assert "cannot be overwritten" in line and "checkpoints/my-best.pt and 1 more" in line, line
    assert snapshot(run) == before
    (run / "notes.txt").unlink()
    (run / "checkpoints" / "my-best.pt").unlink()
    assert main(["train", *TINY, "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "reslab-run.json").read_text())["id"] != marker["id"]  # a new run


def test_reproduce_refuses_a_users_folder_for_out_and_publish(tmp_path, capsys):
    u = _user_folder(tmp_path)
    before = snapshot(u)
    smoke = ["reproduce", "depth", "--budget", "smoke", "--dataset", "synthetic", "--depths", "20", "--quiet"]
    assert main([*smoke, "--out", str(u)]) == 2
    assert "--out" in err_line(capsys)
    assert main([*smoke, "--out", str(tmp_path / "exp"), "--publish", str(u)]) == 2
    line = err_line(capsys)
    assert "--publish" in line and "not a reslab experiment folder" in line and "README.md" in line, line
    assert snapshot(u) == before


def test_predict_out_replaces_only_reslabs_own_drawings_and_never_an_input(tmp_path):
    from PIL import Image

    from reslab.deploy.predict import output_paths
    from reslab.errors import ConfigError
    from reslab.owned import png_info, png_written_by_reslab

    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    with pytest.raises(ConfigError, match="one of the input images"):
        output_paths([str(photo)], photo, "detection", overwrite=True)
    mine = tmp_path / "out.png"
    Image.new("RGB", (8, 8)).save(mine)  # a user's PNG, not drawn by reslab
    with pytest.raises(ConfigError, match="not a drawing reslab wrote"):
        output_paths([str(photo)], mine, "detection", overwrite=True)
    Image.new("RGB", (8, 8)).save(mine, pnginfo=png_info())
    assert png_written_by_reslab(mine) and not png_written_by_reslab(photo)
    assert output_paths([str(photo)], mine, "detection", overwrite=True) == [mine]


# ------------------------------------------------------------------ 2. resume checks config.yaml


def test_resume_refuses_an_edited_config_naming_key_and_values(interrupted, tmp_path, capsys):
    run = copy_tree(interrupted, tmp_path / "run")
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("weight_decay: 0.0005", "weight_decay: 0.005"))
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    line = err_line(capsys)
    assert "weight_decay=0.005" in line and "trained with 0.0005" in line and "restore config.yaml" in line
    assert snapshot(run) == before


def test_more_iterations_on_resume_only_when_accepted_and_recorded(interrupted, tmp_path, capsys):
    run = copy_tree(interrupted, tmp_path / "run")
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace(f"iterations: {ITERATIONS}", f"iterations: {ITERATIONS + 2}"))
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert (
        f"iterations={ITERATIONS + 2}" in (line := err_line(capsys)) and "--accept-change iterations" in line
    )
    assert main(["train", "--resume", str(run), "--quiet", "--accept-change", "iterations"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == ITERATIONS + 2
    history = json.loads((run / "reslab-run.json").read_text())["history"]
    assert history[-1]["changes"] == {"iterations": [ITERATIONS, ITERATIONS + 2]}
    assert main(["verify", str(run)]) == 0
    more = ["--iterations", str(ITERATIONS + 4), "--accept-change", "iterations", "--quiet"]
    assert (
        main(["train", "--resume", str(run), *more]) == 0
    )  # a finished run made longer, on the command line
    assert json.loads((run / "summary.json").read_text())["steps"] == ITERATIONS + 4
    assert main(["train", "--resume", str(run), "--accept-change", "lr"]) == 2  # not a length
    assert "may change only" in err_line(capsys)


# ------------------------------------------------------------------ 3. damaged logs are repaired


@pytest.mark.parametrize("log", ["train_log.csv", "metrics.csv"])
def test_a_damaged_log_is_repaired_on_resume_and_the_run_says_so(
    interrupted, reference, tmp_path, capsys, log
):
    run = copy_tree(interrupted, tmp_path / "run")
    invert(run / log, "middle")
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _, err = lines(capsys)
    assert any(f"{log}: " in e and "damaged row" in e for e in err), err

    def rows(r: Path) -> list[str]:  # without the timing columns of metrics.csv
        return [",".join(line.split(",")[:7]) for line in (r / log).read_text().splitlines()]

    kept, ref = rows(run), rows(reference)
    assert kept[0] == ref[0] and set(kept) <= set(ref) and len(kept) < len(ref)  # what is kept is true
    assert main(["verify", str(run)]) == 0


def test_truncate_log_keeps_the_sound_rows_up_to_the_step(tmp_path):
    """The one log repair every task's resume uses (the RL task's episode log too): rows after the
    checkpoint go, a NUL-damaged row is counted and dropped, a kill's torn tail is not damage, and a
    missing log stays missing."""
    cols = ("step", "frames", "return")
    log = tmp_path / "episodes.csv"
    log.write_bytes(b"step,frames,return\n8,32,1.5\n16,64,\x002.0\n24,96,3.0\n32,128,4.0\n40,16")
    assert truncate_log(log, cols, 24) == 1
    assert log.read_text() == "step,frames,return\n8,32,1.5\n24,96,3.0\n"
    assert truncate_log(tmp_path / "missing.csv", cols, 24) == 0 and not (tmp_path / "missing.csv").exists()


# ------------------------------------------------------------------ 4. no manifest: unverifiable


def _strip_manifests(run: Path) -> None:
    for p in (run / "checkpoints").glob("*.manifest.json"):
        p.unlink()


def test_removed_manifests_make_this_reslabs_checkpoints_unverifiable(interrupted, tmp_path, capsys):
    run = copy_tree(interrupted, tmp_path / "run")
    _strip_manifests(run)
    invert(state_path(run, "last"), "middle")
    assert main(["verify", str(run)]) == 1
    out, _ = lines(capsys)
    assert "no manifest vouches for it" in out and "resume would: refuse" in out, out
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert "no manifest vouches for it" in err_line(capsys)
    assert snapshot(run) == before
    (run / "summary.json").write_text("{}")  # eval reads best: refused, not "written by an older reslab"
    assert main(["eval", str(run), "--device", "cpu"]) == 2
    line = err_line(capsys)
    assert "no manifest vouches for it" in line and "older" not in line


def test_a_half_file_of_an_older_reslab_falls_back_to_prev(interrupted, reference, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from reslab._io import torch_load

    run = copy_tree(interrupted, tmp_path / "run")
    (run / "reslab-run.json").unlink()
    _strip_manifests(run)
    for p in (run / "checkpoints").iterdir():  # as an older reslab wrote them: no run ids
        if p.suffix == ".pt":
            s = torch_load(p)
            for key in ("run_id", "save_index", "config"):
                s.pop(key, None)
            torch.save(s, p)
        else:
            with open(p, "rb") as f:
                meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
            meta.pop("run_id")
            save_file(load_file(p), p, metadata=meta)
    data = state_path(run, "last").read_bytes()
    state_path(run, "last").write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _, err = lines(capsys)
    assert len(err) == 1 and "older reslab" in err[0] and "used prev" in err[0], err
    assert_weights_equal(run, reference)


def assert_weights_equal(run: Path, reference: Path) -> None:
    from conftest import assert_same_weights

    for name in ("last", "best"):
        assert_same_weights(weights_path(reference, name), weights_path(run, name))


# ------------------------------------------------------------------ 5. a damaged best is repaired


def test_a_damaged_best_is_rebuilt_from_its_state_on_resume(interrupted, reference, tmp_path, capsys):
    run = copy_tree(interrupted, tmp_path / "run")
    invert(weights_path(run, "best"), "middle")
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _, err = lines(capsys)
    assert len(err) == 1 and "rebuilt from best.state.pt" in err[0], err
    assert main(["verify", str(run)]) == 0
    assert_weights_equal(run, reference)


def test_a_damaged_best_state_is_dropped_and_its_sound_weights_kept(interrupted, tmp_path, capsys):
    run = copy_tree(interrupted, tmp_path / "run")
    invert(state_path(run, "best"), "middle")
    kept = weights_path(run, "best").read_bytes()
    step = check_generation(run / "checkpoints", "best").step
    from reslab.train.checkpoint import Checkpointer

    ck = Checkpointer(run)  # the resume's own steps, short of training (which would write best again)
    state = ck.load_resume_state()
    line = ck.repair_best(state)
    assert line is not None and "best.state.pt was damaged and is dropped" in line
    gen = check_generation(run / "checkpoints", "best")
    assert gen.sound and gen.step == step and weights_path(run, "best").read_bytes() == kept


def test_a_best_damaged_beyond_repair_is_removed_and_written_again(interrupted, tmp_path, capsys):
    run = copy_tree(interrupted, tmp_path / "run")
    invert(weights_path(run, "best"), "middle")
    invert(state_path(run, "best"), "middle")
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _, err = lines(capsys)
    assert len(err) == 1 and err[0].startswith("reslab: note: removed") and "writes best again" in err[0]
    report = verify_run(run)
    assert report.sound, report.lines()
    assert check_generation(run / "checkpoints", "best").step == ITERATIONS  # the final evaluation


def test_when_last_and_prev_are_damaged_the_refusal_names_a_sound_best(interrupted, tmp_path, capsys):
    run = copy_tree(interrupted, tmp_path / "run")
    for name in ("last", "prev"):
        invert(state_path(run, name), "middle")
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    line = err_line(capsys)
    assert re.search(r"checkpoint best \(step \d+\) is sound", line), line


# ------------------------------------------------------------------ 6. out of memory


def test_out_of_memory_in_a_step_is_one_line_and_keeps_the_checkpoint(
    interrupted, tmp_path, capsys, monkeypatch
):
    import reslab.train.engine as engine

    run = copy_tree(interrupted, tmp_path / "run")
    real = engine.train_step

    def oom(s, batch):
        if s.step == STOP_AT + 3:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 27600000000 bytes. Error code 12 (Cannot allocate memory)")  # fmt: skip
        return real(s, batch)

    monkeypatch.setattr(engine, "train_step", oom)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    line = err_line(capsys)
    assert "out of memory (the CPU could not allocate 25.7 GiB)" in line and "batch size 16" in line, line
    kept = (STOP_AT + 3) // CKPT_EVERY * CKPT_EVERY  # the checkpoint before the failing step
    assert "--batch-size" in line and f"checkpoint is kept (step {kept})" in line, line
    assert not verify_run(run).resume.startswith("refuse")


def test_a_hostile_pickle_is_refused_without_pytorchs_advice(tmp_path, capsys):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    p = tmp_path / "model.pt"
    torch.save({"state_dict": Evil()}, p)
    from reslab._io import torch_load
    from reslab.errors import CheckpointError

    with pytest.raises(CheckpointError) as e:
        torch_load(p)
    msg = str(e.value)
    assert "weights_only" not in msg and "\x1b" not in msg and "system" in msg and "\n" not in msg, msg


def test_kills_at_random_points_across_the_whole_run_lose_nothing(reference, tmp_path):
    """A SIGKILL late in the run (the last steps, the final evaluation, the last saves), not only early:
    each kill followed by a resume, the result bit-identical to the uninterrupted run."""
    import random

    from _forkchild import run as run_child
    from conftest import metric_rows

    rng = random.Random(28)
    run = tmp_path / "run"
    plan = [f"step:{k}" for k in sorted(rng.sample(range(ITERATIONS // 2, ITERATIONS - 1), 3))]
    plan += [f"eval:{ITERATIONS}", "write:3"]  # the final evaluation; a save's rename in the last process
    for i, fault in enumerate(plan):
        argv = ["train", *ARGS, "--out", str(run)] if i == 0 else ["train", "--resume", str(run), "--quiet"]
        assert run_child(argv, fault, str(tmp_path / "log.txt")) != 0, fault
        assert not verify_run(run).resume.startswith("refuse"), (fault, verify_run(run).lines())
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert_weights_equal(run, reference)
    assert metric_rows(run) == metric_rows(reference)
