"""What an analysis measures: *targets*, each one network with the fixed data subset it is measured on.

A target is a training run directory or a checkpoint file (rebuilt with
:func:`reslab.models.weights.load_model`) or a registered model name, freshly initialized
(:func:`reslab.create_model`). The data always comes from :func:`reslab.data.load_dataset`, normalized
with the statistics the network was trained with (the run's config when it holds them, else the data
set's own training-set statistics).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reslab._device import resolve_device
from reslab.errors import ConfigError

DEFAULT_DATASET = "fashion-mnist"


# ------------------------------------------------------------------------------------------ data


@dataclass
class EvalData:
    """A fixed, normalized subset of one split of a data set, kept on the CPU as float32."""

    name: str
    x: torch.Tensor  # (N, C, H, W), normalized
    y: torch.Tensor  # (N,) int64
    num_classes: int
    split: str = "test"
    images: str = ""  # a hash of the subset's raw pixels (before each run's own normalization): which images

    @property
    def in_chans(self) -> int:
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def head(self, n: int) -> EvalData:
        """The first ``n`` images (all when there are fewer)."""
        images = f"{self.images}[:{n}]" if self.images and n < len(self) else self.images
        return replace(self, x=self.x[:n], y=self.y[:n], images=images)

    def batches(
        self, batch_size: int, device: torch.device | str = "cpu"
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        for i in range(0, len(self), batch_size):
            yield self.x[i : i + batch_size].to(device), self.y[i : i + batch_size].to(device)


def _stat(v: Any, channels: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(v, dtype=np.float32)).flatten()
    if t.numel() == 1:
        t = t.repeat(channels)
    if t.numel() != channels:
        raise ConfigError(f"normalization statistics have {t.numel()} channels, the data has {channels}")
    return t.view(1, channels, 1, 1)


def parse_dataset(spec: str) -> tuple[str, dict[str, Any]]:
    """``"fashion-mnist"`` -> (name, {}); ``"synthetic:1x28x28"`` -> ("synthetic", {"shape": (1, 28, 28)})
    (random images: only for tests and smoke runs)."""
    name, _, opt = str(spec).partition(":")
    if not opt:
        return name, {}
    if name.strip().lower() != "synthetic":
        raise ConfigError(f"only the synthetic data set takes a shape (synthetic:CxHxW), got {spec!r}")
    try:
        shape = tuple(int(v) for v in opt.lower().split("x"))
    except ValueError:
        raise ConfigError(f"bad synthetic shape {opt!r}: expected CxHxW, e.g. synthetic:1x28x28") from None
    return name, {"shape": shape}


def load_eval_data(
    dataset: str = DEFAULT_DATASET,
    *,
    data_dir: str | None = None,
    samples: int | None = None,
    seed: int = 0,
    split: str = "test",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> EvalData:
    """A fixed subset (``samples`` images drawn with ``seed``; all when ``None``) of ``split``.

    Pixels are scaled to [0, 1] and normalized with ``mean``/``std`` (default: the data set's own
    training statistics, as :mod:`reslab.data` computes them).
    """
    from reslab.data import load_dataset

    name, kwargs = parse_dataset(dataset)
    ds = load_dataset(name, data_dir=data_dir, **kwargs)
    if split not in ("test", "train"):
        raise ConfigError(f"split must be 'test' or 'train', got {split!r}")
    x = np.asarray(getattr(ds, f"{split}_x"))
    y = np.asarray(getattr(ds, f"{split}_y"))
    n = len(x)
    if samples is not None:
        if samples < 1:
            raise ConfigError(f"--samples must be positive, got {samples}")
        if samples < n:
            g = np.random.default_rng(seed)
            idx = np.sort(g.choice(n, size=samples, replace=False))
            x, y = x[idx], y[idx]
    images = hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]
    xt = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    c = xt.shape[1]
    m = _stat(ds.mean if mean is None else mean, c)
    s = _stat(ds.std if std is None else std, c)
    xt = (xt - m) / s
    num_classes = len(getattr(ds, "classes", [])) or int(y.max()) + 1
    return EvalData(str(dataset), xt, torch.from_numpy(y.astype(np.int64)), num_classes, split, images)


# --------------------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One network to analyze, with the data it is measured on."""

    label: str
    model: nn.Module
    data: EvalData
    source: str  # "init:<name>" or the checkpoint path
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return not self.source.startswith("init:")


def _training_data(meta: dict[str, Any]) -> tuple[str | None, Any, Any, str | None]:
    """(data set spec, mean, std, data_dir) a checkpoint was trained with, from its metadata (top-level
    ``dataset``/``mean``/``std``/``input_size`` as :mod:`reslab.train` writes them, else ``config``)."""
    cfg = _config_of(meta)
    info = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    name = meta.get("dataset") or info.get("dataset") or cfg.get("dataset")
    mean = meta.get("mean", info.get("mean", cfg.get("mean")))
    std = meta.get("std", info.get("std", cfg.get("std")))
    size = meta.get("input_size") or info.get("input_size")
    if name and str(name).split(":")[0] == "synthetic" and ":" not in str(name) and size:
        name = "synthetic:" + "x".join(str(int(v)) for v in size)  # rebuild the same random images' shape
    return (str(name) if name else None), mean, std, cfg.get("data_dir")


def _config_of(metadata: dict[str, Any]) -> dict[str, Any]:
    cfg = metadata.get("config") or {}
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except json.JSONDecodeError:
            cfg = {}
    return cfg if isinstance(cfg, dict) else {}


def _unique(label: str, seen: set[str]) -> str:
    out, i = label, 2
    while out in seen:
        out = f"{label}#{i}"
        i += 1
    seen.add(out)
    return out


def resolve_targets(
    paths: Sequence[str] = (),
    models: Sequence[str] = (),
    *,
    init: bool = False,
    dataset: str | None = None,
    data_dir: str | None = None,
    samples: int | None = None,
    seed: int = 0,
    split: str = "test",
    device: str | torch.device | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> list[Target]:
    """Turn run directories / checkpoints (``paths``) and model names (``models``, with ``init=True``)
    into targets on ``device`` with their evaluation data.

    The data set defaults to the one a checkpoint was trained on (``config.dataset``), else
    Fashion-MNIST; fresh models are built for its channels and classes. Each distinct data set and
    normalization is loaded once.
    """
    if models and not init:
        raise ConfigError(
            "--model builds a fresh network: add --init (or pass run directories / checkpoints)"
        )
    if init and not models:
        raise ConfigError("--init needs --model NAME[,NAME...]")
    if not paths and not models:
        raise ConfigError("nothing to analyze: pass run directories / checkpoints, or --model NAME --init")
    dev = resolve_device(device)
    source = _DataSource(dataset, data_dir, samples, seed, split)
    targets = [_checkpoint_target(p, source, dev) for p in paths]
    targets += [_fresh_target(name, source, dev, model_kwargs or {}) for name in models]
    seen: set[str] = set()
    for t in targets:
        t.label = _unique(t.label, seen)
        if not hasattr(t.model, "blocks") or len(list(t.model.blocks)) == 0:
            raise ConfigError(f"{t.label}: the network has no residual units (model.blocks) to analyze")
    return targets


@dataclass
class _DataSource:
    """Where the targets' data comes from: ``dataset`` (``None``: a checkpoint's own, else
    :data:`DEFAULT_DATASET`) in ``data_dir``, the subset ``samples`` drawn with ``seed`` from ``split``.
    Each distinct data set and normalization is loaded once."""

    dataset: str | None
    data_dir: str | None
    samples: int | None
    seed: int
    split: str
    loaded: dict[tuple, EvalData] = field(default_factory=dict)

    def load(self, name: str, mean: Any = None, std: Any = None, where: str | None = None) -> EvalData:
        key = (
            name,
            None if mean is None else tuple(np.ravel(mean)),
            None if std is None else tuple(np.ravel(std)),
            where,
        )
        if key not in self.loaded:
            self.loaded[key] = load_eval_data(
                name,
                data_dir=where,
                samples=self.samples,
                seed=self.seed,
                split=self.split,
                mean=mean,
                std=std,
            )
        return self.loaded[key]

    def for_checkpoint(self, meta: dict[str, Any]) -> EvalData:
        """``dataset``, else the data set the checkpoint was trained on; normalized (and looked for) as
        in its training when it is that data set."""
        trained_on, mean, std, ddir = _training_data(meta)
        name = self.dataset or trained_on or DEFAULT_DATASET
        if parse_dataset(name)[0] == "medmnist":  # one file per flag, multi-label targets: not read here
            raise ConfigError(
                "reslab analyze does not read MedMNIST data yet: measure the run on another data set "
                "(--dataset synthetic:CxHxW or fashion-mnist), or evaluate it with reslab eval"
            )
        if trained_on is None or parse_dataset(name)[0] != parse_dataset(trained_on)[0]:
            mean = std = ddir = None
        return self.load(name, mean, std, self.data_dir or ddir)

    def for_fresh_model(self) -> EvalData:
        return self.load(self.dataset or DEFAULT_DATASET, where=self.data_dir)


def _checkpoint_target(source: str, data: _DataSource, device: torch.device) -> Target:
    """A run directory or checkpoint, rebuilt on ``device``, with the data it is measured on."""
    from reslab.models.weights import load_model
    from reslab.tasks import refuse_task

    refuse_task(source, "analyze")  # a task whose networks the analyses cannot measure: one line
    model, meta = load_model(source)
    evaluation = data.for_checkpoint(meta)
    _check_compatible(model, evaluation, source)
    label = _checkpoint_label(Path(source))
    return Target(label, model.to(device).eval(), evaluation, str(source), dict(meta))


def _checkpoint_label(path: Path) -> str:
    """A run directory's name; ``RUN/checkpoints/best.safetensors`` -> ``RUN/best``; another file's stem."""
    if path.is_file() and path.parent.name != "checkpoints":
        return path.stem
    return path.name if path.is_dir() else f"{path.parent.parent.name or path.parent.name}/{path.stem}"


def _fresh_target(name: str, data: _DataSource, device: torch.device, model_kwargs: dict[str, Any]) -> Target:
    """The zoo model ``name``, initialized with the data's seed, for the data's channels and classes."""
    from reslab.models.factory import create_model

    evaluation = data.for_fresh_model()
    torch.manual_seed(data.seed)
    model = create_model(
        name, num_classes=evaluation.num_classes, in_chans=evaluation.in_chans, **model_kwargs
    )
    return Target(name, model.to(device).eval(), evaluation, f"init:{name}")


def _check_compatible(model: nn.Module, data: EvalData, source: str) -> None:
    in_chans = getattr(model, "in_chans", None)
    if in_chans is not None and int(in_chans) != data.in_chans:
        raise ConfigError(
            f"{source}: the network takes {in_chans} input channels, {data.name} has {data.in_chans}; pick --dataset"
        )


def split_names(values: Sequence[str] | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (comma-separated or repeated options)."""
    out: list[str] = []
    for v in values or ():
        out.extend(s.strip() for s in v.split(",") if s.strip())
    return out
