"""Config values as a user types them, and defaults that adapt to the data (issue 12, items 1, 6, 7)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing

import pytest
import torch

from reslab.config import FIELD_WORDS, RESUME_KEYS, TrainConfig, apply_overrides
from reslab.errors import ConfigError
from reslab.precision import cpu_has_native_bf16, precision_name, resolve_amp
from reslab.train import load_recipe, parse_set

_HINTS = typing.get_type_hints(TrainConfig)
_BOOL_SPELLINGS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _typed(word: object) -> str:
    return str(word).lower() if isinstance(word, bool) else str(word)


@pytest.mark.parametrize(("key", "word"), [(k, w) for k, words in FIELD_WORDS.items() for w in words])
def test_every_documented_word_works_as_typed(key, word):
    """``--set key=WORD`` for each documented word of each field: accepted, and it means that word."""
    cfg = load_recipe("fashion_mnist")
    apply_overrides(cfg, parse_set([f"{key}={_typed(word)}"]), source="--set")
    cfg.validate()
    want = None if (key == "eval_batch_size" and word == "auto") else word
    assert getattr(cfg, key) == want


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(TrainConfig) if _HINTS[f.name] is bool])
@pytest.mark.parametrize("spelling", sorted(_BOOL_SPELLINGS))
def test_bool_fields_take_every_yaml_spelling(key, spelling):
    cfg = load_recipe("fashion_mnist")
    apply_overrides(cfg, parse_set([f"{key}={spelling}"]), source="--set")
    assert getattr(cfg, key) is _BOOL_SPELLINGS[spelling]


def test_amp_off_from_a_recipe_file_and_the_command_line(tmp_path):
    """YAML reads ``off`` as False; for ``amp`` that is the documented word ``off``, in a file too."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: resnet20\nepochs: 1\namp: off\n")
    assert load_recipe(str(recipe)).amp == "off"
    cfg = load_recipe("fashion_mnist")
    apply_overrides(cfg, parse_set(["amp=off"]))
    assert cfg.amp == "off"
    with pytest.raises(ConfigError, match="amp must be one of auto, bf16, off"):
        apply_overrides(cfg, parse_set(["amp=on"])).validate()  # no "on" word: an error, not a guess


def test_resume_keys_are_machine_keys_and_lr():
    assert "lr" in RESUME_KEYS and "amp" not in RESUME_KEYS  # amp changes the arithmetic: not on resume
    assert {"device", "threads", "data_dir"} <= RESUME_KEYS


def test_amp_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    # auto on the CPU follows the probe (both ways, mocked: tests/test_precision.py)
    assert resolve_amp("auto", cpu) == (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert precision_name(None) == "fp32" and precision_name(torch.bfloat16) == "bf16"
    assert resolve_amp("auto", cuda) == torch.bfloat16
    assert resolve_amp("bf16", cpu) == torch.bfloat16 and resolve_amp("off", cuda) is None


# -------------------------------------------------------------------------- validation split


def test_val_split_count_or_fraction():
    cfg = load_recipe("fashion_mnist")
    assert isinstance(cfg.val_split, float) and round(cfg.val_split * 60000) == 5000  # the paper's 5k
    apply_overrides(cfg, {"val_split": "500"})
    assert cfg.val_split == 500 and isinstance(cfg.val_split, int)
    apply_overrides(cfg, {"val_split": "0.1"})
    assert cfg.val_split == 0.1
    for bad in ("1.5", "-3", "many"):
        with pytest.raises(ConfigError, match="val_split"):
            apply_overrides(load_recipe("fashion_mnist"), {"val_split": bad}).validate()


def _train(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "reslab",
        "train",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
        "--device",
        "cpu",
    ]
    small = ["--set", "threads=1", "--set", "tensorboard=false", "--set", "eval_subset=64"]
    return subprocess.run([*cmd, *small, *args], capture_output=True, text=True, timeout=300)


def test_default_recipe_on_synthetic_data_adapts_its_validation_split(tmp_path):
    """``reslab train --dataset synthetic --epochs 1``: the recipe's 1/12 fits 1,024 images (85 held out)."""
    p = _train(
        tmp_path,
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--model",
        "resnet",
        "--set",
        "model_kwargs.depth=8",
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["selection"] == "val_error"
    assert summary["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")  # amp: auto
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "checkpoints" / "last.safetensors"), "pt") as f:
        data = json.loads(f.metadata()["config"])["data"]
    assert (data["num_train"], data["num_val"]) == (1024 - 85, 85)  # round(1024 / 12) = 85


def test_explicit_val_split_that_does_not_fit_is_one_line(tmp_path):
    p = _train(tmp_path, "--dataset", "synthetic", "--iterations", "1", "--val-split", "5000")
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "val_split=5000 does not fit the 1024" in p.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


# --------------------------------------------------------------- one home for each rule (issue 15)


def test_design_doc_lists_exactly_the_resume_keys():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "design.md").read_text()
    listed = doc.split("<!-- RESUME_KEYS -->")[1].split("<!-- /RESUME_KEYS -->")[0]
    assert {w.strip(" `") for w in listed.split(",")} == set(RESUME_KEYS)


def test_experiment_plans_use_the_machine_keys():
    from reslab.config import MACHINE_KEYS
    from reslab.experiments.plan import config_mismatch

    assert "amp" not in MACHINE_KEYS
    for key in MACHINE_KEYS:  # the one identity rule ignores how a run executes...
        assert config_mismatch({key: "a"}, {key: "b"}) is None
    assert config_mismatch({"amp": "off"}, {"amp": "bf16"}) == ("amp", "off", "bf16")  # ...not its arithmetic
    default = TrainConfig().lr  # a field the stored config lacks holds its default
    assert config_mismatch({}, {"lr": default}) is None
    assert config_mismatch({}, {"lr": default * 2}) == ("lr", default, default * 2)


def _resume_cli(tmp_path, *argv):
    """``reslab train --resume RUN ...`` with the training replaced: the config it would resume with."""
    from unittest import mock

    from reslab.cli import main
    from reslab.train.recipe import config_to_yaml

    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "config.yaml").write_text(config_to_yaml(load_recipe("fashion_mnist_demo")))
    seen = {}

    def fake_train(cfg, out, **kw):
        seen.update(cfg=cfg, out=out, **kw)
        return {"final": {}, "run_dir": str(out), "steps": 0}

    with mock.patch("reslab.train.train", fake_train):
        rc = main(["train", "--resume", str(run), "--quiet", *argv])
    return rc, seen


def test_cli_resume_may_change_exactly_the_resume_keys(tmp_path, capsys):
    rc, seen = _resume_cli(tmp_path, "--lr", "0.01", "--device", "cpu", "--set", "threads=1")
    assert rc == 0 and seen["resume"] is True
    assert (seen["cfg"].lr, seen["cfg"].device, seen["cfg"].threads) == (0.01, "cpu", 1)
    for argv, flag in [(["--batch-size", "64"], "--batch-size"), (["--set", "amp=off"], "--set amp")]:
        assert _resume_cli(tmp_path, *argv)[0] == 2
        assert f"{flag} cannot be changed" in capsys.readouterr().err


def test_train_flags_and_help_come_from_the_config_fields():
    from reslab.cli import build_parser
    from reslab.cli.train import TRAIN_GROUPS
    from reslab.config import config_fields

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    by_dest = {a.dest: a for a in sub._actions}
    names = [f for ns in TRAIN_GROUPS.values() for n in ns for f in (n if isinstance(n, tuple) else (n,))]
    for name in names:
        assert by_dest[name].help == config_fields()[name].metadata["help"], name
        assert by_dest[name].option_strings == ["--" + name.replace("_", "-")]


def test_synthetic_data_is_described_by_the_config():
    from reslab.tasks.classification import load_training_data

    cfg = TrainConfig(dataset="synthetic", iterations=1)
    cfg.update({"data_kwargs": {"shape": [1, 8, 8], "num_classes": 3, "train_size": 40, "test_size": 10}})
    ds = load_training_data(cfg.validate())
    assert tuple(ds.train_x.shape) == (40, 1, 8, 8) and len(ds.test_y) == 10 and ds.num_classes == 3
    for bad, match in [
        ({"size": 3}, "unknown option 'size'"),
        ({"shape": [8, 8]}, r"shape must be \[C, H, W\]"),
        ({"train_size": -1}, "train_size must be a non-negative integer"),
    ]:
        with pytest.raises(ConfigError, match=match):
            TrainConfig(dataset="synthetic", iterations=1, data_kwargs=bad).validate()
    with pytest.raises(ConfigError, match="synthetic data set only"):
        TrainConfig(iterations=1, data_kwargs={"train_size": 3}).validate()
