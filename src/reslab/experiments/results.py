"""Read the runs of an experiment back from their CSV logs and group them over seeds.

Everything here works from files alone (``metrics.csv``, ``train_log.csv``, ``summary.json``,
``config.yaml``), so figures and reports can be redrawn any time, also for interrupted experiments (a
run without ``summary.json`` is reported as unfinished). The paper's claims are judged from these groups
in :mod:`reslab.experiments.claims`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reslab import _io
from reslab.analysis import stats

# ------------------------------------------------------------------------------------------ reading


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a numeric CSV; empty cells and non-numbers become NaN. Missing file: []."""
    path = Path(path)
    if not path.is_file():
        return []
    rows: list[dict[str, float]] = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append({k: _num(v) for k, v in row.items() if k is not None})
    return rows


def _num(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def column(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key``, dropping rows where it is missing/NaN."""
    xs, ys = [], []
    for r in rows:
        v = r.get(key, math.nan)
        s = r.get("step", math.nan)
        if not (math.isnan(v) or math.isnan(s)):
            xs.append(s)
            ys.append(v)
    return xs, ys


def _last(rows: list[dict[str, float]], key: str) -> float:
    _, ys = column(rows, key)
    return ys[-1] if ys else math.nan


@dataclass
class RunResult:
    name: str
    label: str
    family: str
    variant: str
    depth: int
    seed: int
    finished: bool
    steps: int
    iterations: int | None
    train_error: float  # final, %
    test_error: float  # final, %
    best_test_error: float
    n_eval: int  # images in the test evaluation (for the binomial error)
    n_train: int  # training images behind the final training error (the last evaluation window)
    eval_split: str  # "test", or "val" when the test set was not evaluated (its error stands in)
    wall_s: float
    params: int | None
    metrics: list[dict[str, float]] = field(default_factory=list, repr=False)
    train_log: list[dict[str, float]] = field(default_factory=list, repr=False)
    lr_drops: tuple[float, ...] = ()  # iterations where a step schedule divides the lr (figure marks)
    source: str = ""  # another experiment that trained it ("" this one's: reslab.experiments.pooled)
    threads: int = 1  # CPU threads it trained with (wall_s x threads: its cost in core-seconds)


def read_run(run_dir: Path, spec: Any = None) -> RunResult:
    """The numbers of one run directory (``spec``: its RunSpec, for labels; else from config.yaml)."""
    run_dir = Path(run_dir)
    metrics = read_csv(run_dir / "metrics.csv")
    train_log = read_csv(run_dir / "train_log.csv")
    summary = _read_summary(run_dir)
    cfg = _read_config(run_dir)
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    train_err = _last(metrics, "train_error")
    if math.isnan(train_err):
        train_err = _last(train_log, "error")
    if math.isnan(train_err):
        train_err = _first_number(final, ("train_error",))
    test_err, tests, eval_split = _test_errors(metrics, final)
    steps = [s for s in (r.get("step", math.nan) for r in metrics + train_log) if not math.isnan(s)]
    wall = _last(metrics, "elapsed")
    if math.isnan(wall):
        wall = _first_number(summary, ("wall_time_s",))
    params = summary.get("params")
    n_eval = cfg.get("eval_subset") or _default_test_size(cfg.get("dataset"))
    if eval_split == "val":
        n_eval = cfg.get("val_split") or n_eval
    return RunResult(
        **_identity(run_dir, spec, cfg),
        finished=bool(summary.get("finished")),
        steps=int(max(steps)) if steps else 0,
        iterations=cfg.get("iterations"),
        train_error=train_err,
        test_error=test_err,
        best_test_error=min(tests) if tests else test_err,
        n_eval=int(n_eval),
        n_train=_train_window(metrics, cfg) or int(n_eval),
        eval_split=eval_split,
        wall_s=wall,
        params=int(params) if isinstance(params, (int, float)) else None,
        metrics=metrics,
        train_log=train_log,
        lr_drops=_lr_drops(cfg),
        threads=_threads(summary, cfg),
    )


def _read_summary(run_dir: Path) -> dict[str, Any]:
    """``summary.json`` (empty when missing or unreadable)."""
    if not (run_dir / "summary.json").is_file():
        return {}
    try:
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except ValueError:
        return {}


def not_started(spec: Any) -> RunResult:
    """A planned run that has no files anywhere (``spec``: its RunSpec): no numbers, not finished, drawn as
    nothing and counted in its network's denominator ("6/8")."""
    return RunResult(
        **_identity(Path(spec.name), spec, {}),
        finished=False,
        steps=0,
        iterations=None,
        train_error=math.nan,
        test_error=math.nan,
        best_test_error=math.nan,
        n_eval=_default_test_size(None),
        n_train=_default_test_size(None),
        eval_split="test",
        wall_s=math.nan,
        params=None,
    )


def _test_errors(metrics: list[dict[str, float]], final: dict[str, Any]) -> tuple[float, list[float], str]:
    """(final test error, every evaluation's, the split they are of): the test set's, else summary.json's
    final test error, else, where the test set was not evaluated (eval_test off, e.g. the smoke budget),
    the held-out split's, which stands in (split "val")."""
    test_err = _last(metrics, "test_error")
    if math.isnan(test_err):
        test_err = _first_number(final, ("test_error",))
    _, tests = column(metrics, "test_error")
    if not tests and math.isnan(test_err):
        _, vals = column(metrics, "val_error")
        if vals:
            return vals[-1], vals, "val"
    return test_err, tests, "test"


def _identity(run_dir: Path, spec: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """The run's name, label, family, variant, depth and seed: its RunSpec's, else guessed from its
    config (the model's name)."""
    if spec is not None:
        keys = ("name", "label", "family", "variant", "depth", "seed")
        return {k: getattr(spec, k) for k in keys}
    model = str(cfg.get("model", run_dir.name))
    family = "plain" if model.startswith("plain") else "highway" if model.startswith("highway") else "resnet"
    return {
        "name": run_dir.name,
        "label": model,
        "family": family,
        "variant": family,
        "depth": _depth_of(model),
        "seed": int(cfg.get("seed", 0) or 0),
    }


def _lr_drops(cfg: dict[str, Any]) -> tuple[float, ...]:
    """The iterations of a step schedule's milestones; () for other schedules or epoch milestones."""
    ms = cfg.get("milestones")
    if cfg.get("schedule") != "step" or not isinstance(ms, list) or not cfg.get("iterations"):
        return ()
    return tuple(float(m) for m in ms if isinstance(m, (int, float)))


def _train_window(metrics: list[dict[str, float]], cfg: dict[str, Any]) -> int:
    """Images averaged into the last metrics row's train_error: (its step - the previous one) x batch."""
    steps, _ = column(metrics, "train_error")
    bs = cfg.get("batch_size")
    if not steps or not isinstance(bs, int):
        return 0
    prev = steps[-2] if len(steps) > 1 else 0
    return int((steps[-1] - prev) * bs)


def _threads(summary: dict[str, Any], cfg: dict[str, Any]) -> int:
    """The CPU threads a run trained with: its summary's, else its config's (1 when neither says)."""
    n = _first_number(summary, ("threads",))
    if not math.isfinite(n):
        n = _first_number(cfg, ("threads",))
    return max(1, int(n)) if math.isfinite(n) else 1


def _first_number(d: dict[str, Any], keys: tuple[str, ...]) -> float:
    for k in keys:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return math.nan


def _depth_of(model: str) -> int:
    digits = "".join(c for c in model if c.isdigit())
    return int(digits) if digits else 0


def _default_test_size(dataset: Any) -> int:
    return 10000  # Fashion-MNIST, CIFAR-10 and CIFAR-100 test sets


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return d if isinstance(d, dict) else {}


def write_results_csv(path: Path, results: list[RunResult]) -> None:
    """``results.csv``: one row per run, its final numbers (blank where not measured)."""
    cols = [
        "run",
        "network",
        "family",
        "variant",
        "depth",
        "seed",
        "finished",
        "steps",
        "train_error",
        "test_error",
        "best_test_error",
        "wall_s",
        "params",
        "trained_by",
    ]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in results:
        w.writerow(
            [
                r.name,
                r.label,
                r.family,
                r.variant,
                r.depth,
                r.seed,
                int(r.finished),
                r.steps,
                _c(r.train_error),
                _c(r.test_error),
                _c(r.best_test_error),
                _c(r.wall_s),
                r.params if r.params is not None else "",
                r.source or "this experiment",
            ]
        )
    _io.write_text(path, buf.getvalue())


def _c(x: float) -> str:
    return f"{x:.4f}" if math.isfinite(x) else ""


# ------------------------------------------------------------------------------------- aggregation


@dataclass
class Group:
    """The runs of one network (variant, depth) over seeds."""

    label: str
    family: str
    variant: str
    depth: int
    runs: list[RunResult]

    def values(self, attr: str) -> list[float]:
        """The finite per-seed values of ``attr`` (e.g. ``"test_error"``) of the finished runs, in seed
        order: a run stopped mid-way (its last evaluation's numbers) is progress, not a result, and counts
        in no mean, claim or final-error panel until it finishes (its curves are drawn)."""
        return [getattr(r, attr) for r in self.runs if r.finished and math.isfinite(getattr(r, attr))]

    def mean(self, attr: str) -> float:
        return stats.mean(self.values(attr))

    def std(self, attr: str) -> float:
        """Sample standard deviation over seeds; NaN with fewer than two."""
        return stats.std(self.values(attr))

    def range(self, attr: str) -> tuple[float, float]:
        """(min, max) over seeds; NaNs when nothing is finite."""
        v = self.values(attr)
        return (min(v), max(v)) if v else (math.nan, math.nan)

    def se(self, attr: str) -> float:
        """Standard error of the mean: over seeds when there are 2+, else binomial on the images it was
        measured on (the evaluation set; for training error the last window of training batches)."""
        v = self.values(attr)
        if len(v) >= 2:
            return self.std(attr) / math.sqrt(len(v))
        if not v:
            return math.nan
        r = self.runs[0]
        return stats.binomial_se(v[0], r.n_train if attr == "train_error" else r.n_eval)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def finished(self) -> bool:
        return all(r.finished for r in self.runs)

    def in_progress(self) -> list[RunResult]:
        """Runs started but not finished: they have logged steps (curves), no final numbers yet."""
        return [r for r in self.runs if not r.finished and r.steps > 0]

    def not_started(self) -> list[RunResult]:
        """Planned runs with no step logged and no numbers: seeds added to a sweep, or runs ``--runs`` left
        for later."""
        return [r for r in self.runs if not r.finished and r.steps == 0]

    def open_runs(self) -> str:
        """What of the group is not finished: "" when all is, else e.g. "1 in progress, 2 not started"."""
        started, waiting = len(self.in_progress()), len(self.not_started())
        parts = [f"{started} in progress"] if started else []
        if waiting:
            parts.append(f"{waiting} not started")
        return ", ".join(parts)


def group_runs(results: list[RunResult]) -> list[Group]:
    groups: dict[tuple[str, int], Group] = {}
    for r in results:
        key = (r.variant, r.depth)
        if key not in groups:
            groups[key] = Group(r.label, r.family, r.variant, r.depth, [])
        groups[key].runs.append(r)
    for g in groups.values():
        g.runs.sort(key=lambda r: r.seed)
    return list(groups.values())


def fmt(x: float, sd: float = math.nan) -> str:
    if not math.isfinite(x):
        return "—"
    return f"{x:.2f} ± {sd:.2f}" if math.isfinite(sd) else f"{x:.2f}"


def fmt_range(lo: float, hi: float) -> str:
    """The seeds' minimum–maximum; one value for a single seed; "—" for none."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "—"
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f}–{hi:.2f}"
