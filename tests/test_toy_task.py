"""A new task is one file, one registry line and one recipe (issue 29, docs/design.md): the toy task of
tests/toy/ trains, resumes, evaluates and predicts through the command line, and refuses what it does
not offer in one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from reslab.cli import main
from reslab.tasks import TASKS

TOY = Path(__file__).parent / "toy"


@pytest.fixture
def bars(monkeypatch):
    monkeypatch.syspath_prepend(str(TOY))
    from toy_task import Bars, bars

    monkeypatch.setitem(TASKS, "bars", Bars)  # the one registry line
    yield bars
    sys.modules.pop("toy_task", None)


def test_a_task_in_one_file_trains_resumes_evaluates_and_predicts(bars, tmp_path, capsys):
    from PIL import Image

    run = tmp_path / "run"
    assert main(["train", "--task", "bars", "--out", str(run), "--quiet", "--set", "iterations=20"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "bars" and summary["steps"] == 20
    # resumed to a longer run: the same run continues from its checkpoint at step 20
    assert (
        main(
            ["train", "--resume", str(run), "--quiet", "--iterations", "40", "--accept-change", "iterations"]
        )
        == 0
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["final"]["val_error"] < 10.0  # a bar is easy to find
    capsys.readouterr()

    assert main(["eval", str(run)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("val: error ") and (run / "eval.json").is_file()

    x, y = bars(4, seed=7)
    files = []
    for i in range(4):
        files.append(str(tmp_path / f"bar{i}.png"))
        Image.fromarray(x[i, 0].numpy()).save(files[-1])
    assert main(["predict", str(run), *files, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["half"] for p in found] == [("top", "bottom")[int(v)] for v in y]


def test_what_a_task_does_not_offer_is_one_line(bars, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "bars", "--out", str(run), "--quiet", "--set", "iterations=2"]) == 0
    capsys.readouterr()
    assert main(["features", str(run)]) == 2
    assert capsys.readouterr().err == "reslab: error: a bars run has no backbone stages worth listing\n"
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    assert main(["features", str(run), str(tmp_path / "x.png")]) == 2  # a task without an embedder
    assert "embeds images with classifier and face runs" in capsys.readouterr().err
    assert main(["predict", str(run), str(tmp_path / "x.png"), "--out", str(tmp_path / "o.png")]) == 2
    assert "this run's predictions are printed" in capsys.readouterr().err
