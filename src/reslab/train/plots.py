"""``curves.png`` from the CSV logs: training and test error vs iterations (the paper's Fig. 1/4/6 style);
for a task whose metric is not an error (mAP, mIoU), the training loss beside the validation and test
metric."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a reslab CSV as floats (empty cells -> NaN); rows that do not parse (a torn line) are skipped."""
    rows: list[dict[str, float]] = []
    if not Path(path).exists():
        return rows
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({k: (float(v) if v not in ("", None) else float("nan")) for k, v in row.items()})
            except (TypeError, ValueError):
                continue
    return rows


def plot_curves(run_dir: Path, path: Path | None = None, title: str = "", metric: str = "error") -> Path:
    """Draw ``curves.png`` (or ``path``) of a run; ``metric``: the task's primary metric (the
    ``val_<metric>`` / ``test_<metric>`` columns of ``metrics.csv``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reslab._io import write_bytes

    run_dir = Path(run_dir)
    path = Path(path) if path else run_dir / "curves.png"
    log = read_csv(run_dir / "train_log.csv")
    metrics = read_csv(run_dir / "metrics.csv")
    if metric != "error":
        fig = _loss_and_metric(log, metrics, metric, title)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        write_bytes(path, buf.getvalue())
        return path
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if log:
        ax.plot(
            [r["step"] for r in log],
            [r["error"] for r in log],
            lw=0.8,
            ls="--",
            color="C0",
            label="train error",
        )
    for key, color, label in (("val_error", "C2", "val error"), ("test_error", "C3", "test error")):
        pts = [(r["step"], r[key]) for r in metrics if r.get(key) == r.get(key)]  # drop NaN
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, lw=2, color=color, marker="o" if len(pts) < 30 else None, ms=3, label=label)
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    errs = [r["error"] for r in log[len(log) // 10 :]] + [
        r[k] for r in metrics for k in ("val_error", "test_error") if r.get(k) == r.get(k)
    ]
    if errs:
        ax.set_ylim(0, min(100.0, max(5.0, 1.5 * sorted(errs)[int(0.9 * (len(errs) - 1))])))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path


def _loss_and_metric(
    log: list[dict[str, float]], metrics: list[dict[str, float]], metric: str, title: str
) -> Any:
    """Two panels: the training loss per log row, and ``val_<metric>`` / ``test_<metric>`` per evaluation."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    if log:
        left.plot([r["step"] for r in log], [r["loss"] for r in log], lw=0.8, color="C0", label="train loss")
        left.set_yscale("log")
    left.set_xlabel("iterations")
    left.set_ylabel("training loss")
    left.grid(alpha=0.3)
    for split, color in (("val", "C2"), ("test", "C3")):
        key = f"{split}_{metric}"
        pts = [(r["step"], r[key]) for r in metrics if r.get(key) == r.get(key)]  # drop NaN
        if pts:
            xs, ys = zip(*pts)
            right.plot(
                xs,
                ys,
                lw=2,
                color=color,
                marker="o" if len(pts) < 30 else None,
                ms=3,
                label=f"{split} {metric}",
            )
    values = [y for line in right.lines for y in line.get_ydata()]
    if values and all(0 <= v <= 1 for v in values):  # a fraction (mAP, mIoU): on its whole scale
        right.set_ylim(0, 1)
    right.set_xlabel("iterations")
    right.set_ylabel(metric)
    right.grid(alpha=0.3)
    if right.lines:
        right.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
