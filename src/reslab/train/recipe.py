"""Recipes and YAML: the shipped recipes (``src/reslab/train/recipes/<name>.yaml``), reading a recipe or a
run's stored ``config.yaml``, writing one, and ``--set key=value`` parsing.

A recipe is a flat mapping of :class:`~reslab.config.TrainConfig` fields; anything it does not set
keeps the dataclass default.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reslab.config import DEFAULT_RECIPE, TrainConfig, apply_overrides
from reslab.errors import ConfigError, first_line

RECIPE_DIR = Path(__file__).with_name("recipes")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(str(name), list_recipes(), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown recipe {name!r}{hint} (recipes: {', '.join(list_recipes())})")
    return path


def read_yaml(path: str | Path, what: str = "file") -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or type(e).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = first_line(e, default="invalid YAML")
        raise ConfigError(f"{what} {path} is not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping of config keys")
    return data


def load_recipe(name: str = DEFAULT_RECIPE, **overrides: Any) -> TrainConfig:
    """The recipe ``name`` (a shipped recipe or a path to a YAML file) as a validated :class:`TrainConfig`.

    ``overrides`` are applied on top (``load_recipe("cifar_paper", model="resnet56")``).
    The recipe's ``model_kwargs`` belong to its model: an override of ``model`` drops them
    (:func:`own_model_kwargs`).
    """
    path = recipe_path(name)
    cfg = TrainConfig()
    cfg.update(read_yaml(path, "recipe"), source=f"recipe {path.stem}")
    cfg.recipe = path.stem if path.parent == RECIPE_DIR else str(path)
    own_model_kwargs(cfg, overrides.get("model"))
    apply_overrides(cfg, overrides, source="override")
    return cfg.validate()


def own_model_kwargs(cfg: TrainConfig, model: str | None) -> str | None:
    """A recipe's ``model_kwargs`` are arguments of its model (the video recipe's ``depth``, ``width``,
    ``conv`` of ``video_resnet``): when ``model`` replaces that model they are dropped from ``cfg``, not
    passed to a model that may not take them. Returns the note that says so (``None``: nothing dropped)."""
    if model is None or model == cfg.model or not cfg.model_kwargs:
        return None
    dropped = ", ".join(f"{k}={v}" for k, v in cfg.model_kwargs.items())
    note = (
        f"model {model} replaces the recipe's {cfg.model}; its model_kwargs ({dropped}) stay with it "
        f"(give {model}'s own with --set model_kwargs.KEY=VALUE)"
    )
    cfg.model_kwargs = {}
    return note


@dataclass
class ResolvedConfig:
    """A new run's config as ``reslab train`` resolves it: the recipe, then the command line's flags, then
    ``--set``; ``sources`` says where each field (a dict field's keys as ``field.key``) came from
    (``default``, ``recipe NAME``, ``--flag``, ``--set``), ``notes`` what the resolution changed on its own."""

    cfg: TrainConfig
    sources: dict[str, str]
    notes: list[str] = field(default_factory=list)


def resolve_config(recipe: str, flags: dict[str, Any], sets: dict[str, Any]) -> ResolvedConfig:
    """The recipe ``recipe`` with ``flags`` (field -> value, as ``--model`` gives them) and ``sets``
    (``--set key=value``, :func:`parse_set`) applied, and where each value came from. Not validated."""
    path = recipe_path(recipe)
    raw = read_yaml(path, "recipe")
    cfg = TrainConfig()
    cfg.update(raw, source=f"recipe {path.stem}")
    cfg.recipe = path.stem if path.parent == RECIPE_DIR else str(path)
    sources = {name: "default" for name in cfg.to_dict()}
    where = f"recipe {cfg.recipe}"
    _attribute(sources, raw, where)
    notes = [n for n in [own_model_kwargs(cfg, flags.get("model", sets.get("model")))] if n]
    if notes:
        sources = {k: v for k, v in sources.items() if not k.startswith("model_kwargs.")}
        sources["model_kwargs"] = f"dropped: {where}'s, for {raw.get('model')}"
    apply_overrides(cfg, flags, source="command line")
    _attribute(sources, flags, None)
    apply_overrides(cfg, sets, source="--set")
    _attribute(sources, sets, "--set")
    return ResolvedConfig(cfg, sources, notes)


def _attribute(sources: dict[str, str], layer: dict[str, Any], where: str | None) -> None:
    """Mark the keys ``layer`` sets as coming from ``where`` (``None``: each key's own flag); a dict field
    set as a whole names each of its keys; the budget set clears the other (``epochs`` / ``iterations``)."""
    for key, value in layer.items():
        src = where or f"--{key.replace('_', '-')}"
        if isinstance(value, dict) and "." not in key:
            sources.update({f"{key}.{k}": src for k in value})
        sources[key] = src
        other = {"epochs": "iterations", "iterations": "epochs"}.get(key)
        if other and value is not None:
            sources[other] = src


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["lr=0.05", "milestones=[10, 20]", "model_kwargs.shortcut=B"]`` -> dict (YAML scalars/lists)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key] = value
    return out


def config_to_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
