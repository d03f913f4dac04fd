"""What every analysis shares: resolve targets to ``(label, model, data)``, pick the data, write outputs.

A *target* is one network to take apart: a training run directory or a checkpoint file (rebuilt with
:func:`reslab.models.weights.load_model`) or a registered model name, freshly initialized
(:func:`reslab.create_model`). The data always comes from :func:`reslab.data.load_dataset`, normalized
with the statistics the network was trained with (the run's config when it holds them, else the data
set's own training-set statistics).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reslab._device import resolve_device
from reslab._io import write_bytes, write_text
from reslab.errors import ConfigError, ReslabError

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

    @property
    def in_chans(self) -> int:
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def head(self, n: int) -> EvalData:
        """The first ``n`` images (all when there are fewer)."""
        return replace(self, x=self.x[:n], y=self.y[:n])

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
    xt = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    c = xt.shape[1]
    m = _stat(ds.mean if mean is None else mean, c)
    s = _stat(ds.std if std is None else std, c)
    xt = (xt - m) / s
    num_classes = len(getattr(ds, "classes", [])) or int(y.max()) + 1
    return EvalData(str(dataset), xt, torch.from_numpy(y.astype(np.int64)), num_classes, split)


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
    from reslab.models.factory import create_model

    if models and not init:
        raise ConfigError(
            "--model builds a fresh network: add --init (or pass run directories / checkpoints)"
        )
    if init and not models:
        raise ConfigError("--init needs --model NAME[,NAME...]")
    if not paths and not models:
        raise ConfigError("nothing to analyze: pass run directories / checkpoints, or --model NAME --init")
    dev = resolve_device(device)
    cache: dict[tuple, EvalData] = {}

    def data_for(name: str, mean: Any = None, std: Any = None, where: str | None = data_dir) -> EvalData:
        key = (
            name,
            None if mean is None else tuple(np.ravel(mean)),
            None if std is None else tuple(np.ravel(std)),
            where,
        )
        if key not in cache:
            cache[key] = load_eval_data(
                name, data_dir=where, samples=samples, seed=seed, split=split, mean=mean, std=std
            )
        return cache[key]

    seen: set[str] = set()
    targets: list[Target] = []
    for p in paths:
        from reslab.models.weights import load_model

        model, meta = load_model(p)
        trained_on, mean, std, ddir = _training_data(meta)
        name = dataset or trained_on or DEFAULT_DATASET
        same = trained_on is not None and parse_dataset(name)[0] == parse_dataset(trained_on)[0]
        data = data_for(
            name, mean if same else None, std if same else None, data_dir or (ddir if same else None)
        )
        _check_compatible(model, data, p)
        path = Path(p)
        label = path.name if path.is_dir() else f"{path.parent.parent.name or path.parent.name}/{path.stem}"
        if path.is_file() and path.parent.name != "checkpoints":
            label = path.stem
        targets.append(Target(_unique(label, seen), model.to(dev).eval(), data, str(p), dict(meta)))
    for name in models:
        data = data_for(dataset or DEFAULT_DATASET)
        torch.manual_seed(seed)
        model = create_model(
            name, num_classes=data.num_classes, in_chans=data.in_chans, **(model_kwargs or {})
        )
        targets.append(Target(_unique(name, seen), model.to(dev).eval(), data, f"init:{name}"))
    for t in targets:
        if not hasattr(t.model, "blocks") or len(list(t.model.blocks)) == 0:
            raise ConfigError(f"{t.label}: the network has no residual units (model.blocks) to analyze")
    return targets


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


# ------------------------------------------------------------------------------------ model tools


def blocks_of(model: nn.Module) -> list[nn.Module]:
    return list(model.blocks)  # type: ignore[attr-defined]


def without_batchnorm(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every BatchNorm module replaced by ``nn.Identity`` (weights shared
    by value, not by reference): the same network as initialized or trained, minus normalization."""
    clone = copy.deepcopy(model)
    _strip_bn(clone)
    return clone


def _strip_bn(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _strip_bn(child)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def evaluate(model: nn.Module, data: EvalData, batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy loss, top-1 error in percent) of ``model`` (as it is: train/eval mode kept)."""
    dev = next(model.parameters()).device
    loss_sum, wrong, n = 0.0, 0, 0
    for x, y in data.batches(batch_size, dev):
        logits = model(x).float()
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        wrong += (logits.argmax(1) != y).sum().item()
        n += len(y)
    return loss_sum / max(n, 1), 100.0 * wrong / max(n, 1)


# ---------------------------------------------------------------------------------------- outputs


def default_out(name: str) -> Path:
    return Path("analysis") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of dicts to CSV (atomic); the columns are the union of the keys, in first-seen order."""
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(v) for k, v in r.items()})
    write_text(path, buf.getvalue())


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return v


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def save_npz(path: str | Path, **arrays: Any) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    write_bytes(path, buf.getvalue())


def new_figure(*args: Any, **kwargs: Any):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def write_summary(
    out: Path, title: str, targets: Sequence[Target], sections: Sequence[str], files: Sequence[str]
) -> None:
    lines = [f"# {title}", ""]
    lines.append("Targets:")
    for t in targets:
        kind = "freshly initialized" if not t.trained else "trained"
        lines.append(
            f"- `{t.label}`: {kind} ({t.source}); {len(t.data)} {t.data.split} images of {t.data.name}"
        )
    sizes = sorted({len(t.data) for t in targets})
    if any(t.trained for t in targets) and sizes and sizes[0] < 10000:
        lines.append("")
        lines.append(
            f"Every number here is measured on these {'/'.join(f'{n:,}' for n in sizes)} images (a fixed subset, "
            "the same for every network of one command). A run's own report evaluates its whole evaluation set, "
            "and another analysis may use another subset, so error rates of one checkpoint differ between them "
            "by sampling noise: on n images an error rate p has a standard error of 100 sqrt(p (1 - p) / n) "
            "points (±1.3 at p = 20% on 1,000 images, ±2.5 on 256, ±0.4 on 10,000)."
        )
    lines.append("")
    for s in sections:
        lines.extend([s.rstrip(), ""])
    lines.append("Files: " + ", ".join(f"`{f}`" for f in files))
    write_text(out / "summary.md", "\n".join(lines) + "\n")


def prepare_out(out: str | Path | None, name: str) -> Path:
    path = Path(out) if out else default_out(name)
    if path.exists() and not path.is_dir():
        raise ReslabError(f"--out {path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def fmt_num(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"
