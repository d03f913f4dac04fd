"""``reslab analyze NAME`` as a typed call: an :class:`AnalysisRequest` (what the command line or a script
asks for) -> :func:`run_analysis` resolves the targets, runs the one analysis and returns the folder of its
outputs (figure, raw numbers, ``summary.md``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from reslab.errors import ConfigError

# Default size of the evaluation subset per analysis (``--samples`` overrides): gradients and paths use
# one batch of ``--batch-size`` images; responses all test images; lesion and landscape the same fixed
# subset (same size, same ``--seed``: the same images), so one checkpoint's errors agree between them.
DEFAULT_SAMPLES = {"gradients": None, "paths": None, "responses": None, "lesion": 1000, "landscape": 1000}
DEFAULT_BATCH = {"gradients": 128, "paths": 128, "responses": 256, "lesion": 256, "landscape": 256}
DEFAULT_SAMPLES["ode"], DEFAULT_BATCH["ode"] = None, 128


ANALYSES = ("gradients", "responses", "lesion", "paths", "landscape", "ode")
ONE_BATCH = ("gradients", "paths", "ode")  # measured on one batch: the first --batch-size of the subset


@dataclass(frozen=True)
class AnalysisRequest:
    """One analysis of some networks. ``targets``: run directories or checkpoints; ``model``: zoo names
    (with ``init``: freshly initialized); ``None`` values take the analysis's defaults (``DEFAULT_BATCH``,
    ``DEFAULT_SAMPLES``, a checkpoint's own data set, ``analysis/<name>-<time>``). The remaining fields
    belong to one analysis each: ``bn``/``bn_mode``/``path_samples`` (gradients, paths, ode),
    ``lesion_samples``/``max_k`` (lesion), ``mode``/``resolution``/``span`` (landscape)."""

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


def run_analysis(args: AnalysisRequest) -> Path:
    """Run the analysis ``args`` asks for; returns its output folder."""
    from reslab.analysis.common import prepare_out, resolve_targets, split_names

    name = args.analysis
    if name not in ANALYSES:
        raise ConfigError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}")
    models = split_names(args.model)
    batch = args.batch_size or DEFAULT_BATCH[name]
    if batch < 1:
        raise ConfigError("--batch-size must be positive")
    samples = args.samples if args.samples is not None else DEFAULT_SAMPLES[name]
    if name in ONE_BATCH and samples is None:
        samples = batch  # one batch is all these analyses use
    targets = resolve_targets(
        list(args.targets),
        models,
        init=args.init,
        dataset=args.dataset,
        data_dir=args.data_dir,
        samples=samples,
        seed=args.seed,
        split=args.split,
        device=args.device,
    )
    if name in ONE_BATCH:  # they measure the subset's first batch only: say so in every summary
        targets = [replace(t, data=t.data.head(batch)) for t in targets]
    out = prepare_out(args.out, name)
    progress = not args.quiet and sys.stderr.isatty()
    if name == "gradients":
        from reslab.analysis.gradients import run_gradients

        run_gradients(targets, out, batch_size=batch, bn=args.bn, mode=args.bn_mode)
    elif name == "responses":
        from reslab.analysis.responses import run_responses

        run_responses(targets, out, batch_size=batch)
    elif name == "lesion":
        from reslab.analysis.lesion import run_lesion

        run_lesion(
            targets,
            out,
            batch_size=batch,
            samples=args.lesion_samples,
            max_k=args.max_k,
            seed=args.seed,
            progress=progress,
        )
    elif name == "paths":
        from reslab.analysis.paths import run_paths

        run_paths(
            targets,
            out,
            batch_size=batch,
            samples=args.path_samples,
            seed=args.seed,
            mode=args.bn_mode,
            progress=progress,
        )
    elif name == "landscape":
        from reslab.analysis.landscape import run_landscape

        run_landscape(
            targets,
            out,
            mode=args.mode,
            resolution=args.resolution,
            span=args.span,
            seed=args.seed,
            batch_size=batch,
            progress=not args.quiet,
        )
    elif name == "ode":
        from reslab.analysis.ode import run_ode

        run_ode(targets, out, batch_size=batch, mode=args.bn_mode)
    return Path(out)
