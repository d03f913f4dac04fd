"""What every analysis shares besides its targets (:mod:`reslab.analysis.targets`): model tools (the
units, a copy without BatchNorm, loss and error on the data) and the outputs (CSV, NPZ, figures,
``summary.md``)."""

from __future__ import annotations

import copy
import csv
import io
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reslab._io import write_bytes, write_text
from reslab.analysis.targets import EvalData, Target
from reslab.errors import ReslabError
from reslab.provenance import public_path

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


def unit_rows(head: dict[str, Any], index: str, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per unit of a network: ``head`` (the network's own columns), the unit's position under
    ``index``, then the unit's entry of each per-unit array in ``columns`` (as Python numbers)."""
    values = {name: np.asarray(v).tolist() for name, v in columns.items()}
    units = len(next(iter(values.values())))
    return [{**head, index: i, **{name: v[i] for name, v in values.items()}} for i in range(units)]


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
    """``summary.md``: the targets (a checkpoint named as :func:`reslab.provenance.public_path` writes it:
    relative to the current directory, else elided), the sections, the files."""
    lines = [f"# {title}", ""]
    lines.append("Targets:")
    for t in targets:
        kind = "freshly initialized" if not t.trained else "trained"
        lines.append(
            f"- `{t.label}`: {kind} ({public_path(t.source)}); {len(t.data)} {t.data.split} images of {t.data.name}"
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
