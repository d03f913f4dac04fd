"""What video and super-resolution share behind the seam: :class:`LoaderTask` (a model of one
registered family, a resumable loader, a loss and an evaluation callable per split)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from reslab.config import TrainConfig
from reslab.errors import ConfigError
from reslab.tasks.base import EvalRequest, Refusals, Runtime, load_init


class LoaderTask(Refusals):
    """What video and super-resolution share behind the seam: a model of one registered family
    (``model_task``) whose arguments the data partly decides (``fixed_kwargs``), training batches from a
    resumable loader sharded over the ranks, a loss on the fp32 output, and an evaluation callable per
    split (``_evals``). A subclass sets the data, ``info``, ``loader``, ``_loss``, ``_evals`` and the
    metrics in :meth:`_set_up`; model selection reads the validation split's primary metric, never the
    test split's."""

    name: str
    model_task: str
    loader: Any
    info: dict[str, Any]
    eval_splits: tuple[str, ...]
    selection: str
    metric_names: tuple[str, ...]
    higher_is_better: bool
    counts_errors: bool
    data_sets: ClassVar[tuple[str, ...]] = ()  # values of cfg.dataset the task reads (with data_kwargs)

    def __init__(self, cfg: TrainConfig, rt: Runtime) -> None:
        from reslab.models import model_info

        kind = model_info(cfg.model)["task"]
        if kind != self.model_task:
            raise ConfigError(f"task {self.name!r} trains {self.model_task} models; {cfg.model!r} is {kind}")
        world = rt.dist.world_size
        if cfg.batch_size % world:
            raise ConfigError(f"batch_size {cfg.batch_size} is not a multiple of the {world} ranks")
        for key in ("subset", "cutout", "data_kwargs"):
            if getattr(cfg, key, None) and not (key == "data_kwargs" and cfg.dataset in self.data_sets):
                raise ConfigError(f"{key} applies to the image data sets, not to task {self.name!r}")
        self.rt = rt
        self.batch_size = cfg.batch_size // world  # per rank: cfg.batch_size is global
        self.eval_batch_size = cfg.eval_batch_size or (256 if rt.device.type == "cuda" else 64)
        self.fixed_kwargs: dict[str, Any] = {}  # model arguments the data decides
        self._evals: dict[str, Callable[[nn.Module], dict[str, float]]] = {}
        self._loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
        self._set_up(cfg, dict(cfg.task_kwargs or {}))
        self.eval_splits = tuple(s for s in ("val", "test") if s in self._evals)

    def _set_up(self, cfg: TrainConfig, options: dict[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def evaluate_checkpoint(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        """``reslab eval``: both splits together, as trained (no ``--tta``, no ``--split``); the task's
        :meth:`evaluate_run`."""
        if request.tta != "none":
            raise ConfigError(f"--tta applies to classification; a {cls.name} run evaluates as trained")
        if set(request.splits) != {"val", "test"}:
            raise ConfigError(
                f"a {cls.name} run is evaluated on its validation and test sets together (no --split)"
            )
        return cls.evaluate_run(checkpoint, request)

    @classmethod
    def evaluate_run(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        raise NotImplementedError

    def build_model(self, cfg: TrainConfig, *, init: bool) -> nn.Module:
        """``create_model(cfg.model, **cfg.model_kwargs)`` with the data's channels (and classes); a fresh
        run (``init``) loads ``cfg.init_from`` if set (a classifier of another size is replaced)."""
        from reslab.models import create_model

        kwargs = dict(cfg.model_kwargs)
        for key, value in self.fixed_kwargs.items():
            if kwargs.get(key, value) != value:
                raise ConfigError(f"model_kwargs {key}={kwargs[key]} does not fit the data ({key} {value})")
            kwargs[key] = value
        model = create_model(cfg.model, **kwargs)
        if init and cfg.init_from:
            load_init(model, cfg.init_from, download=cfg.download)
            n = self.fixed_kwargs.get("num_classes")
            if n is not None and model.num_classes != n:  # type: ignore[attr-defined]
                model.reset_classifier(n)  # type: ignore[operator]
        return model

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, target = batch
        out = model(x)
        loss = self._loss(out.float(), target)
        with torch.no_grad():
            if self.counts_errors:
                errors = (out.argmax(1) != target).sum()
            else:
                errors = torch.zeros((), dtype=torch.long, device=target.device)
        return loss, errors, len(target)

    def evaluate(self, split: str, model: nn.Module) -> dict[str, float]:
        return self._evals[split](model)

    def select(self, metrics: dict[str, dict[str, float]], train_error: float | None) -> tuple[str, float]:
        """The validation split's primary metric (never the test split's); without a validation split
        (video with ``val_split: 0``): the training error."""
        primary = self.metric_names[0]
        if "val" in metrics:
            return f"val_{primary}", metrics["val"][primary]
        return "train_error", float("nan") if train_error is None else train_error
