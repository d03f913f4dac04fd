"""Recipes and YAML: the shipped recipes (``src/reslab/train/recipes/<name>.yaml``), reading a recipe or a
run's stored ``config.yaml``, writing one, and ``--set key=value`` parsing.

A recipe is a flat mapping of :class:`~reslab.config.TrainConfig` fields; anything it does not set
keeps the dataclass default.
"""

from __future__ import annotations

import difflib
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
    """
    path = recipe_path(name)
    cfg = TrainConfig()
    cfg.update(read_yaml(path, "recipe"), source=f"recipe {path.stem}")
    cfg.recipe = path.stem if path.parent == RECIPE_DIR else str(path)
    apply_overrides(cfg, overrides, source="override")
    return cfg.validate()


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
