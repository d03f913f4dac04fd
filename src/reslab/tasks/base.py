"""The interface of the loader-driven tasks (video, super-resolution): a :class:`Task` bundles what differs
from classification, so the engine's loop (schedule, step, checkpoint, exact resume) serves them unchanged:
the default model and data, training batches from a resumable loader, the loss, and the evaluation with the
number "best" is chosen by (``primary_metric``, as the dense tasks name it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reslab.errors import ConfigError


@dataclass(frozen=True)
class Task:
    """What the engine needs to train and evaluate one kind of model.

    - ``load_data(data_dir=None, download=False, **options) -> data`` (the task's data object);
    - ``train_loader(data, batch_size, *, device, seed, **options)``: an object with ``batches()``
      (endless (input, target) batches on ``device``), ``state_dict()`` and ``load_state_dict()`` (exact
      resume);
    - ``loss(output, target) -> scalar tensor``;
    - ``evaluate(model, data, *, device, batch_size) -> dict[str, float]`` on the test split, including
      ``primary_metric``; ``higher_is_better`` says which way "best" goes.
    - ``describe(data) -> dict``: JSON values for checkpoint metadata (what ``predict`` and reports need:
      sizes, normalization, classes or scale, image names, the data's source and checksum).
    - ``model_task``: the registry's task of the models it can train (``model_info(name)["task"]``).
    """

    name: str
    model_task: str
    default_model: str
    default_model_kwargs: dict[str, Any]
    default_data: str
    primary_metric: str
    higher_is_better: bool
    load_data: Callable[..., Any]
    train_loader: Callable[..., Any]
    loss: Callable[..., Any]
    evaluate: Callable[..., dict[str, float]]
    describe: Callable[[Any], dict[str, Any]]
    aliases: tuple[str, ...] = ()

    def check_model(self, name: str) -> None:
        """A one-line error unless the registered model ``name`` is one this task trains."""
        from reslab.models import model_info

        kind = model_info(name)["task"]
        if kind != self.model_task:
            raise ConfigError(f"task {self.name!r} trains {self.model_task} models; {name!r} is {kind}")


def run_config(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, data info)`` a training run stored in a checkpoint's metadata (``{}`` where absent)."""
    config = meta.get("config") or {}
    config = json.loads(config) if isinstance(config, str) else config
    config = config if isinstance(config, dict) else {}
    info = config.get("data")
    return config, info if isinstance(info, dict) else {}


def eval_dir(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Where ``eval.json`` of ``checkpoint`` goes: ``out_dir``, else its run directory (the folder above
    ``checkpoints/``), else the checkpoint's folder."""
    if out_dir:
        return Path(out_dir)
    folder = Path(checkpoint).parent
    if folder.name != "checkpoints":
        return folder
    from reslab.owned import claim

    # the run directory's marker learns the files an evaluation writes there (``--overwrite`` removes them)
    claim(folder.parent, "run", "eval.json", *(f"confusion_{split}.png" for split in ("val", "test")))
    return folder.parent


def checkpoint_task(path_or_run: str | os.PathLike) -> str:
    """The task a run or weights file was trained for: a detection / segmentation model's ``spec`` (also
    a model saved from Python, without a training config), else its config's ``task``;
    ``"classification"`` for a file without reslab metadata (a foreign checkpoint) or one that cannot be
    read (its own reader reports that). Reads the metadata once."""
    from reslab.errors import ReslabError
    from reslab.models.dense import is_dense_spec
    from reslab.models.weights import read_metadata, resolve_checkpoint

    try:
        path = resolve_checkpoint(path_or_run)
        meta = read_metadata(path) if path.suffix == ".safetensors" else {}
    except ReslabError:
        return "classification"
    if is_dense_spec(meta.get("spec")):
        return str(meta["spec"]["task"])
    return str(run_config(meta)[0].get("task") or "classification")
