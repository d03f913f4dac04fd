"""``reslab analyze NAME`` as a typed call: an :class:`AnalysisRequest` (what the command line or a script
asks for) -> :func:`run_analysis` resolves the targets, runs the one analysis and returns the folder of its
outputs (figure, raw numbers, ``summary.md``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reslab.errors import ConfigError


@dataclass(frozen=True)
class AnalysisRequest:
    """One analysis of some networks. ``targets``: run directories or checkpoints; ``model``: zoo names
    (with ``init``: freshly initialized); ``None`` values take the analysis's defaults (:data:`SPECS`, a
    checkpoint's own data set, ``analysis/<name>-<time>``). The remaining fields belong to one analysis
    each: ``bn``/``bn_mode``/``path_samples`` (gradients, paths, ode), ``lesion_samples``/``max_k``
    (lesion), ``mode``/``resolution``/``span`` (landscape)."""

    analysis: str
    targets: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    init: bool = False
    dataset: str | None = None
    data_dir: str | None = None
    split: str = "test"
    batch_size: int | None = None
    samples: int | None = None
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    quiet: bool = False
    bn: str | None = None
    bn_mode: str = "train"
    path_samples: int = 10
    lesion_samples: int = 10
    max_k: int | None = None
    mode: str = "plane"
    resolution: int = 21
    span: float = 1.0
    measured: tuple[str, ...] = ()  # responses: earlier responses.csv files counted with these targets

    @property
    def progress(self) -> bool:
        """Progress bars unless ``quiet`` (landscape)."""
        return not self.quiet

    @property
    def progress_on_tty(self) -> bool:
        """Progress bars unless ``quiet``, and only on a terminal (lesion, paths)."""
        return not self.quiet and sys.stderr.isatty()


def _no_options(a: AnalysisRequest) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class AnalysisSpec:
    """One analysis as ``reslab analyze NAME`` runs it: the default ``--batch-size`` and ``--samples``
    (``None``: every image), whether it measures only the first batch of the subset (``one_batch``),
    and the keywords its ``run_NAME`` takes from the request besides the batch size."""

    batch: int
    samples: int | None = None
    one_batch: bool = False
    finished_only: bool = False  # run directories count only when finished (:func:`finished_runs`)
    options: Callable[[AnalysisRequest], dict[str, Any]] = _no_options

    def subset(self, samples: int | None, batch: int) -> int | None:
        """The size of the subset to draw: ``samples`` if given, else the default (one batch for the
        one-batch analyses: it is all they use)."""
        if samples is not None:
            return samples
        return batch if self.one_batch else self.samples


# Lesion and landscape default to the same fixed subset (same size, same ``--seed``: the same images), so
# one checkpoint's errors agree between them; responses measure every test image.
SPECS = {
    "gradients": AnalysisSpec(128, one_batch=True, options=lambda a: {"bn": a.bn, "mode": a.bn_mode}),
    "responses": AnalysisSpec(256, finished_only=True, options=lambda a: {"measured": a.measured}),
    "lesion": AnalysisSpec(
        256,
        1000,
        options=lambda a: {
            "samples": a.lesion_samples,
            "max_k": a.max_k,
            "seed": a.seed,
            "progress": a.progress_on_tty,
        },
    ),
    "paths": AnalysisSpec(
        128,
        one_batch=True,
        options=lambda a: {
            "samples": a.path_samples,
            "seed": a.seed,
            "mode": a.bn_mode,
            "progress": a.progress_on_tty,
        },
    ),
    "landscape": AnalysisSpec(
        256,
        1000,
        options=lambda a: {
            "mode": a.mode,
            "resolution": a.resolution,
            "span": a.span,
            "seed": a.seed,
            "progress": a.progress,
        },
    ),
    "ode": AnalysisSpec(128, one_batch=True, options=lambda a: {"mode": a.bn_mode}),
}
ANALYSES = tuple(SPECS)


def _run_function(name: str) -> Callable[..., Any]:
    """``run_NAME`` of the analysis ``name``; its module is imported only here, when an analysis runs, so
    that ``reslab --help`` (which lists :data:`ANALYSES`) imports no torch."""
    from reslab.analysis import gradients, landscape, lesion, ode, paths, responses

    return {
        "gradients": gradients.run_gradients,
        "responses": responses.run_responses,
        "lesion": lesion.run_lesion,
        "paths": paths.run_paths,
        "landscape": landscape.run_landscape,
        "ode": ode.run_ode,
    }[name]


def finished_runs(paths: tuple[str, ...]) -> list[str]:
    """``paths`` less the run directories whose training has not finished (no ``summary.json`` saying
    ``finished``, or no checkpoint yet), each skipped one named on stderr: a command over every seed of an
    experiment takes the seeds that exist and skips those still training."""
    import json

    out = []
    for p in paths:
        d = Path(p)
        summary, ckpts = d / "summary.json", d / "checkpoints"
        if d.is_dir() and not (d / "config.yaml").exists() and not summary.exists():
            out.append(p)  # not a run directory: the targets' own checks apply
            continue
        try:
            done = d.is_file() or bool(json.loads(summary.read_text()).get("finished"))
        except (OSError, ValueError):
            done = False
        if done and (d.is_file() or any(ckpts.glob("*.safetensors")) or any(ckpts.glob("*.pt"))):
            out.append(p)
        else:
            why = "no checkpoint here" if done else "its training has not finished"
            print(f"reslab analyze: skipped {p}: {why}", file=sys.stderr)
    return out


def run_analysis(args: AnalysisRequest) -> Path:
    """Run the analysis ``args`` asks for; returns its output folder."""
    from reslab.analysis.common import prepare_out
    from reslab.analysis.targets import resolve_targets, split_names

    name = args.analysis
    if name not in SPECS:
        raise ConfigError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}")
    spec = SPECS[name]
    models = split_names(args.model)
    batch = args.batch_size or spec.batch
    if batch < 1:
        raise ConfigError("--batch-size must be positive")
    paths = finished_runs(args.targets) if spec.finished_only else list(args.targets)
    targets = resolve_targets(
        paths,
        models,
        init=args.init,
        dataset=args.dataset,
        data_dir=args.data_dir,
        samples=spec.subset(args.samples, batch),
        seed=args.seed,
        split=args.split,
        device=args.device,
    )
    if spec.one_batch:  # they measure the subset's first batch only: say so in every summary
        targets = [replace(t, data=t.data.head(batch)) for t in targets]
    out = prepare_out(args.out, name)
    _run_function(name)(targets, out, batch_size=batch, **spec.options(args))
    return Path(out)
