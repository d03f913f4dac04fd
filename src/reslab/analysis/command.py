"""``reslab analyze NAME``: resolve the targets, run one analysis, print where the outputs went."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reslab.errors import ConfigError

# Default size of the evaluation subset per analysis (``--samples`` overrides): gradients and paths use
# one batch of ``--batch-size`` images; responses all test images; lesion and landscape the same fixed
# subset (same size, same ``--seed``: the same images), so one checkpoint's errors agree between them.
DEFAULT_SAMPLES = {"gradients": None, "paths": None, "responses": None, "lesion": 1000, "landscape": 1000}
DEFAULT_BATCH = {"gradients": 128, "paths": 128, "responses": 256, "lesion": 256, "landscape": 256}
DEFAULT_SAMPLES["ode"], DEFAULT_BATCH["ode"] = None, 128


def run(args: argparse.Namespace) -> int:
    from reslab.analysis.common import prepare_out, resolve_targets, split_names

    name = args.analysis
    models = split_names(args.model)
    batch = args.batch_size or DEFAULT_BATCH[name]
    if batch < 1:
        raise ConfigError("--batch-size must be positive")
    samples = args.samples if args.samples is not None else DEFAULT_SAMPLES[name]
    if name in ("gradients", "paths", "ode") and samples is None:
        samples = batch  # one batch is all these analyses use
    targets = resolve_targets(
        args.targets,
        models,
        init=args.init,
        dataset=args.dataset,
        data_dir=args.data_dir,
        samples=samples,
        seed=args.seed,
        split=args.split,
        device=args.device,
    )
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
    else:  # pragma: no cover - argparse restricts the choices
        raise ConfigError(f"unknown analysis {name!r}")
    print(f"{name}: wrote {Path(out) / 'summary.md'}")
    return 0
