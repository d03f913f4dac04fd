"""The config's fields are typed, and the types are the rules (issue 29, item 5): coercion and validation
read each field's annotation; ``task`` is a plain name, the registry (:data:`reslab.tasks.TASKS`) says
which exist; configs written by older runs still load and compare equal."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest
import yaml

import reslab
import reslab.config as config_module
from reslab.config import FIELD_WORDS, TrainConfig, apply_overrides, config_difference
from reslab.config_values import conforms, describe, literal_words
from reslab.errors import ConfigError, ReslabError
from reslab.train import list_recipes, load_recipe, parse_set
from reslab.train.recipe import config_to_yaml

_HINTS = typing.get_type_hints(TrainConfig)
_WORD_FIELDS = [name for name, hint in _HINTS.items() if literal_words(hint)]


def test_the_words_are_the_annotations():
    """The fields that take words are typed with them; :data:`FIELD_WORDS` is generated from the types."""
    assert {"optimizer", "schedule", "warmup_mode", "amp", "optimizer_impl"} <= set(_WORD_FIELDS)
    assert {"channels_last", "cudnn_benchmark", "compile"} <= set(_WORD_FIELDS)
    assert "task" not in FIELD_WORDS and _HINTS["task"] is str  # a name: the registry knows the tasks
    assert not [n for n, h in _HINTS.items() if h is typing.Any], "a field typed Any"
    for name in _WORD_FIELDS:
        assert FIELD_WORDS[name] == literal_words(_HINTS[name])


@pytest.mark.parametrize("name", _WORD_FIELDS)
def test_a_word_field_refuses_other_words_when_set_and_when_validated(name):
    listed = describe(_HINTS[name])
    assert listed.startswith("one of ")
    with pytest.raises(ConfigError, match=f"--set: {name} must be {listed}, got 'nope'"):
        apply_overrides(load_recipe("fashion_mnist"), {name: "nope"}, source="--set")
    with pytest.raises(ConfigError, match=f"^{name} must be {listed}, got 'nope'$"):
        TrainConfig(iterations=1, **{name: "nope"}).validate()


@pytest.mark.parametrize("name", ["channels_last", "cudnn_benchmark", "compile"])
@pytest.mark.parametrize(("spelling", "value"), [("yes", True), ("off", False), ("TRUE", True), ("0", False)])
def test_bool_or_word_fields_read_yaml_spellings_as_typed_by_a_flag(name, spelling, value):
    cfg = apply_overrides(load_recipe("fashion_mnist"), {name: spelling}, source="command line")
    assert getattr(cfg.validate(), name) is value


def test_every_default_and_every_recipe_is_of_its_fields_types():
    defaults = TrainConfig()
    for name, hint in _HINTS.items():
        assert conforms(hint, getattr(defaults, name)), name
    for recipe in list_recipes():
        cfg = load_recipe(recipe)
        bad = [n for n, h in _HINTS.items() if not conforms(h, getattr(cfg, n))]
        assert not bad, (recipe, bad)
        again = TrainConfig.from_dict(yaml.safe_load(config_to_yaml(cfg))).validate()
        assert again.to_dict() == cfg.to_dict() and not config_difference(cfg.to_dict(), again.to_dict())


def test_a_config_stored_by_an_older_run_loads_and_compares_equal():
    """What older engines wrote: words as strings, booleans, ``off`` unquoted (YAML: False), a float 0 for
    ``val_split``, no ``eval_batch_size`` word (None), fields missing (they held their defaults)."""
    stored = yaml.safe_load(
        "task: classification\nmodel: resnet20\nepochs: 2\namp: off\nchannels_last: auto\ncompile: false\n"
        "cudnn_benchmark: true\noptimizer_impl: auto\nschedule: cosine\nwarmup_mode: linear\nval_split: 0.0\n"
        "eval_batch_size: null\noptimizer: sgd\ndevice: cpu\n"
    )
    cfg = TrainConfig.from_dict(stored, source="config.yaml").validate()
    assert (cfg.amp, cfg.channels_last, cfg.compile, cfg.cudnn_benchmark) == ("off", "auto", False, True)
    assert cfg.val_split == 0 and cfg.eval_batch_size is None and cfg.schedule == "cosine"
    written = yaml.safe_load(config_to_yaml(cfg))  # safe_dump quotes 'off': it reads back as the word
    assert written["amp"] == "off" and config_difference(written, cfg.to_dict()) == []
    del stored["amp"]  # the rest as stored: equal to the config it loads as
    assert config_difference(stored, cfg.replace(amp="auto").to_dict()) == []


def test_numbers_keep_their_messages():
    cases = [
        ({"batch_size": "big"}, "batch_size must be an integer, got 'big'"),
        ({"lr": "inf"}, "lr must be a finite number"),
        ({"subset": "x"}, "subset must be an integer"),
        ({"val_split": "many"}, "val_split must be a number"),
        ({"milestones": ["a"]}, "milestones must be a list of numbers"),
        ({"download": 1}, "download must be true or false"),
    ]
    for change, message in cases:
        with pytest.raises(ConfigError, match=message):
            apply_overrides(load_recipe("fashion_mnist"), change)
    for change, message in [
        ({"workers": -1}, "workers must be non-negative, got -1"),
        ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\), got 1.0"),
        ({"eval_batch_size": 0}, "eval_batch_size must be positive, got 0"),
        ({"lr": "0.1"}, "lr must be a number, got '0.1'"),  # built directly: not coerced
        ({"task": " "}, "task must be set"),
    ]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(iterations=1, **change).validate()
    cfg = load_recipe("fashion_mnist", **parse_set(["eval_batch_size=auto", "val_split=500", "subset=none"]))
    assert (cfg.eval_batch_size, cfg.val_split, cfg.subset) == (None, 500, None)


# ------------------------------------------------------------------- the task: a name, the registry's


def test_config_takes_any_task_name_and_the_command_line_checks_it(tmp_path, capsys):
    from reslab.cli import main

    assert TrainConfig(task="tracking", iterations=1).validate().task == "tracking"  # config knows no tasks
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: tracking\nmodel: resnet20\niterations: 1\n")
    for argv in (["--recipe", str(recipe)], ["--set", "task=tracking"]):
        assert main(["train", *argv, "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "unknown task 'tracking'; choose from classification" in err, err
        assert not (tmp_path / "run").exists()


def test_task_recipe_comes_from_the_registry():
    from reslab.cli.train import task_recipe
    from reslab.tasks import TASKS

    assert task_recipe(None) == "fashion_mnist" == task_recipe("classification")
    assert task_recipe("sr") == task_recipe("super-resolution") == "super_resolution"
    for name in TASKS:
        assert task_recipe(name) in list_recipes(), name
        assert load_recipe(task_recipe(name)).task in TASKS
    with pytest.raises(ReslabError, match="--task must be one of classification, detection"):
        task_recipe("tracking")


def test_config_imports_nothing_above_it():
    """``reslab.config`` is below the tasks and the loop: no import of them, not even inside a function."""
    above = ("reslab.tasks", "reslab.train", "reslab.cli", "reslab.experiments", "reslab.deploy")
    src = Path(reslab.__file__).parent
    for module in ("config.py", "config_values.py"):
        tree = ast.parse((src / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith(above), (module, node.module)
            elif isinstance(node, ast.Import):
                assert not [a.name for a in node.names if a.name.startswith(above)], module
    assert not hasattr(config_module, "TASK_NAMES")
