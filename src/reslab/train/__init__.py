"""Training: ``TrainConfig`` (typed config), recipes (YAML), ``train(cfg, out_dir) -> summary``.

    from reslab.train import load_recipe, train
    cfg = load_recipe("fashion_mnist_demo", model="resnet20")
    summary = train(cfg, "runs/demo", progress=False)

``train`` and ``evaluate`` import torch; importing this package and building configs does not. The loop
is :mod:`reslab.train.engine`; what it trains plugs in through :mod:`reslab.train.task`; the module table
is in docs/design.md.
"""

from __future__ import annotations

from typing import Any

from reslab.config import DEFAULT_RECIPE, MACHINE_KEYS, RESUME_KEYS, TrainConfig, apply_overrides
from reslab.train.recipe import list_recipes, load_recipe, parse_set

__all__ = [
    "DEFAULT_RECIPE",
    "MACHINE_KEYS",
    "RESUME_KEYS",
    "TrainConfig",
    "apply_overrides",
    "list_recipes",
    "load_recipe",
    "parse_set",
    "train",
]


def train(cfg: TrainConfig | None, out_dir: Any = None, **kwargs: Any) -> dict[str, Any]:
    """See :func:`reslab.train.engine.train`."""
    from reslab.train.engine import train as _train

    return _train(cfg, out_dir, **kwargs)
