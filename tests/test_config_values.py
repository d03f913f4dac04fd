"""Config values as a user types them, and defaults that adapt to the data (issue 12, items 1, 6, 7)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing

import pytest
import torch

from reslab.errors import ConfigError
from reslab.train import load_recipe, parse_set
from reslab.train.config import FIELD_WORDS, RESUME_KEYS, TrainConfig, apply_overrides
from reslab.train.precision import cpu_has_native_bf16, precision_name, resolve_amp

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
    assert resolve_amp("auto", cpu) is None and precision_name(None) == "fp32"
    assert resolve_amp("auto", cuda) == torch.bfloat16
    assert resolve_amp("bf16", cpu) == torch.bfloat16 and resolve_amp("off", cuda) is None
    assert isinstance(cpu_has_native_bf16(), bool)


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
    assert summary["selection"] == "val_error" and summary["precision"] == "fp32"
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "checkpoints" / "last.safetensors"), "pt") as f:
        data = json.loads(f.metadata()["config"])["data"]
    assert (data["num_train"], data["num_val"]) == (1024 - 85, 85)  # round(1024 / 12) = 85


def test_explicit_val_split_that_does_not_fit_is_one_line(tmp_path):
    p = _train(tmp_path, "--dataset", "synthetic", "--iterations", "1", "--val-split", "5000")
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "val_split=5000 does not fit the 1024" in p.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
