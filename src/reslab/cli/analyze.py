"""``reslab analyze``: take a network apart (:mod:`reslab.analysis`)."""

from __future__ import annotations

import argparse

from reslab.cli.options import add_device


def add_analyze(sub: argparse._SubParsersAction) -> None:
    from reslab.analysis.command import ANALYSES

    p = sub.add_parser(
        "analyze",
        help=f"take a network apart: {', '.join(ANALYSES)}",
        description="Measure trained runs / checkpoints or fresh models (--model NAME[,NAME] --init); writes "
        "a PNG figure, the raw numbers (CSV/NPZ) and summary.md into --out.",
    )
    p.add_argument("analysis", choices=ANALYSES)
    p.add_argument(
        "targets", nargs="*", metavar="RUN_OR_CHECKPOINT", help="run directories or .safetensors files"
    )
    p.add_argument(
        "--model", action="append", metavar="NAME[,NAME]", help="zoo models to build (with --init)"
    )
    p.add_argument("--init", action="store_true", help="analyze freshly initialized --model networks")
    p.add_argument(
        "--dataset", help="fashion-mnist (default; a checkpoint's own data set), cifar10, synthetic[:CxHxW]"
    )
    p.add_argument("--data-dir", help="where the data set lies (default: the usual places)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="data split (default test)")
    p.add_argument("--batch-size", type=int, help="batch size (gradients/paths: the one measured batch)")
    p.add_argument("--samples", "--subset", dest="samples", type=int, help="images in the fixed data subset")
    p.add_argument(
        "--seed", type=int, default=0, help="seed for subsets, directions, sampled paths (default 0)"
    )
    add_device(p)
    p.add_argument("--out", help="output directory (default analysis/<name>-<time>); landscape resumes in it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("gradients / paths / ode")
    g.add_argument(
        "--bn", choices=("with", "without", "both"), help="BN as is, replaced by identity, or both"
    )
    g.add_argument(
        "--bn-mode", choices=("train", "eval"), default="train", help="BN statistics (default train)"
    )
    g.add_argument("--path-samples", type=int, default=10, help="sampled paths per length (default 10)")
    g = p.add_argument_group("lesion")
    g.add_argument("--lesion-samples", type=int, default=10, help="random sets per k (default 10)")
    g.add_argument("--max-k", type=int, help="largest number of deleted units (default all)")
    g = p.add_argument_group("responses")
    g.add_argument("--measured", action="append", metavar="CSV", help="a responses.csv written earlier by this "
                   "command, on the same images: its networks count with these (repeatable)")  # fmt: skip
    g = p.add_argument_group("landscape")
    g.add_argument(
        "--mode", choices=("plane", "direction", "line"), default="plane", help="2-D, 1-D or between two"
    )
    g.add_argument("--resolution", type=int, default=21, help="points per axis (default 21)")
    g.add_argument("--span", type=float, default=1.0, help="grid over [-span, span] (default 1)")
    p.set_defaults(func=_cmd_analyze)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from reslab.analysis.command import AnalysisRequest, run_analysis

    given = {
        f.name: getattr(args, f.name) for f in fields(AnalysisRequest) if getattr(args, f.name) is not None
    }
    given["targets"] = tuple(args.targets)
    given["model"] = tuple(args.model or ())
    given["measured"] = tuple(args.measured or ())
    out = run_analysis(AnalysisRequest(**given))
    print(f"{args.analysis}: wrote {out / 'summary.md'}")
    return 0
