"""Corruption after a write: bytes inverted at the start, header, middle and end of every checkpoint file
kind, truncation, a file swapped in from another run, a lost manifest, a run from an older reslab.

Each is detected (never used silently): resume falls back to the previous generation with one line and
ends bit-identical to the uninterrupted run; the readers (eval, predict, export, features, --init-from)
refuse with one line and exit 2; `reslab verify` names the damaged file; where no sound generation is
left, resume refuses and nothing is changed or deleted.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import (
    ARGS,
    ITERATIONS,
    STOP_AT,
    assert_same_weights,
    invert,
    metric_rows,
)
from conftest import copy_tree as _copy
from conftest import err_line as _err_line
from conftest import lines as _lines
from conftest import snapshot as _snapshot

from reslab._io import torch_load
from reslab.cli import main
from reslab.manifest import check_generation
from reslab.train.checkpoint import Checkpointer, state_path, weights_path
from reslab.train.verify import verify_run


def _assert_equals_reference(run: Path, reference: Path) -> None:
    for name in ("last", "best"):
        assert_same_weights(weights_path(reference, name), weights_path(run, name))
    assert metric_rows(run) == metric_rows(reference)
    assert (run / "train_log.csv").read_text() == (reference / "train_log.csv").read_text()


# ------------------------------------------------------------------------- resume: fall back to prev

FALLBACK_CASES = {
    "state, 64 bytes inverted in the middle (the issue's case)": ("last.state.pt", "middle"),
    "weights, truncated to half": ("last.safetensors", "truncate"),
    "manifest lost": ("last.manifest.json", "delete"),
    "a save killed before its manifest (the files are newer)": ("last.manifest.json", "stale"),
}


@pytest.mark.parametrize("case", list(FALLBACK_CASES))
def test_damaged_last_falls_back_to_prev_and_ends_bit_identical(
    case, interrupted, reference, tmp_path, capsys
):
    run = _copy(interrupted, tmp_path / "run")
    name, how = FALLBACK_CASES[case]
    path = run / "checkpoints" / name
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "delete":
        path.unlink()
    elif how == "stale":  # what a crash between the data files' renames and the manifest's leaves
        shutil.copy(run / "checkpoints" / "prev.manifest.json", path)
        assert main(["verify", str(run)]) == 0  # not damage: "partial", and resume passes over it
        out, _ = _lines(capsys)
        assert re.search(
            r"last +partial +step 39: last.state.pt: of step 41, newer than its manifest", out
        ), out
    else:
        invert(path, how)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _, err = _lines(capsys)
    assert len(err) == 1 and err[0].startswith("reslab: note:"), err  # one line says so
    assert f"resuming from the previous checkpoint (step {STOP_AT - 1})" in err[0], err[0]
    if how == "delete":
        assert "last.safetensors, last.state.pt: no manifest" in err[0], err[0]
    elif how == "stale":
        assert "a save was interrupted" in err[0], err[0]
    else:
        assert f"last (step {STOP_AT + 1}) is not sound: {name}" in err[0], err[0]
    _assert_equals_reference(run, reference)  # the lost steps were redone, bit for bit
    report = verify_run(run)
    assert report.sound, report.lines()


def test_no_sound_generation_left_refuses_and_changes_nothing(interrupted, tmp_path, capsys):
    run = _copy(interrupted, tmp_path / "run")
    invert(state_path(run, "last"), "middle")
    state_path(run, "prev").write_bytes(state_path(run, "prev").read_bytes()[:1000])
    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    line = _err_line(capsys)
    assert "no sound checkpoint" in line and "last.state.pt" in line and "prev.state.pt" in line, line
    assert _snapshot(run) == before  # nothing deleted, nothing rewritten
    assert main(["verify", str(run)]) == 1
    out, _ = _lines(capsys)
    assert "resume would: refuse" in out


# ------------------------------------------------------- detection: every file kind, every offset


@pytest.mark.parametrize("kind", ["safetensors", "state.pt", "manifest.json"])
def test_inverted_bytes_anywhere_in_any_file_are_detected(kind, reference, tmp_path, capsys):
    pristine = _snapshot(reference)
    for where in ("start", "header", "middle", "end", "truncate"):
        run = _copy(reference, tmp_path / where)
        (run / "summary.json").unlink()  # unfinished: resume would continue it
        path = run / "checkpoints" / f"last.{kind}"
        if where == "truncate":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:
            invert(path, where)
        gen = check_generation(run / "checkpoints", "last")
        assert not gen.sound and any(f"last.{kind}" in p for p in gen.problems), (where, gen.problems)
        assert check_generation(run / "checkpoints", "prev").sound  # the fallback is untouched
        assert main(["verify", str(run)]) == 1, where
        out, _ = _lines(capsys)
        assert f"last.{kind}" in out and f"fall back to prev (step {ITERATIONS - 3})" in out, out
        state = Checkpointer(run, main=False).load_resume_state()
        assert state is not None and state["step"] == ITERATIONS - 3  # what resume would use
        if kind != "state.pt":  # a reader of last's weights refuses them
            assert main(["features", str(run / "checkpoints" / "last.safetensors")]) == 2, where
            assert "last." in _err_line(capsys)
    assert _snapshot(reference) == pristine


def test_readers_refuse_a_damaged_best_and_name_it(reference, tmp_path, capsys):
    run = _copy(reference, tmp_path / "run")
    invert(weights_path(run, "best"), "middle")
    img = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(img)
    cases = [
        ["eval", str(run), "--device", "cpu", "--out", str(tmp_path / "ev")],
        ["predict", str(run), str(img)],
        ["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "m.safetensors")],
        ["features", str(run)],
        ["train", *ARGS, "--init-from", str(run), "--out", str(tmp_path / "ft")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        line = _err_line(capsys)
        assert "best.safetensors: checksum mismatch" in line and "reslab verify" in line, line
    assert not any((tmp_path / n).exists() for n in ("ev", "m.safetensors", "ft"))
    # the sound `last` is still readable where named
    assert main(["features", str(weights_path(run, "last"))]) == 0


def test_a_file_swapped_in_from_another_run_is_detected(interrupted, reference, tmp_path, capsys):
    run = _copy(reference, tmp_path / "run")
    for name in ("best.safetensors", "last.state.pt"):
        shutil.copy(interrupted / "checkpoints" / name, run / "checkpoints" / name)
    assert main(["verify", str(run)]) == 1
    out, _ = _lines(capsys)
    assert "best.safetensors: from another run" in out and "last.state.pt: from another run" in out, out
    assert main(["eval", str(run), "--device", "cpu"]) == 2
    assert "from another run" in _err_line(capsys)
    (run / "summary.json").unlink()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # falls back to prev (step 45)
    _, err = _lines(capsys)  # and rebuilds best's weights from its own sound best.state.pt
    assert len(err) == 2 and "from another run" in err[0] and "(step 45)" in err[0], err
    assert "best (step 32) was damaged" in err[1] and "rebuilt from best.state.pt" in err[1], err
    assert main(["verify", str(run)]) == 0


# ------------------------------------------------------------------------- a run of an older reslab


def test_older_run_without_manifests_is_accepted_with_a_note_then_checksummed(
    interrupted, reference, tmp_path, capsys
):
    from safetensors.torch import load_file, save_file

    run = _copy(interrupted, tmp_path / "run")
    (run / "reslab-run.json").unlink()  # as an older reslab left it: no marker, no manifests, no prev,
    for p in run.glob("checkpoints/*"):  # no run id, no save count, no config in the state
        if p.name.endswith(".manifest.json") or p.name.startswith("prev."):
            p.unlink()
        elif p.name.endswith(".state.pt"):
            s = torch_load(p)
            for key in ("run_id", "save_index", "config"):
                del s[key]
            torch.save(s, p)
        elif p.name.endswith(".safetensors"):
            with open(p, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                meta = json.loads(f.read(n))["__metadata__"]
            del meta["run_id"]
            save_file(load_file(p), p, metadata=meta)
    assert main(["verify", str(run)]) == 0
    out, _ = _lines(capsys)
    assert "no checksums" in out and "continue from last unverified" in out, out
    assert main(["features", str(run)]) == 0
    _, err = _lines(capsys)
    assert len(err) == 1 and "no checksum record" in err[0], err
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _, err = _lines(capsys)
    assert len(err) == 1 and "older reslab" in err[0] and "checksummed from now on" in err[0], err
    _assert_equals_reference(run, reference)
    report = verify_run(run)
    assert report.sound and all("match their manifest" in f.detail for f in report.findings[:3]), (
        report.lines()
    )
