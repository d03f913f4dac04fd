"""The ``reslab`` command line: one sub-command per job, each a thin layer over the Python API.

Every user error ends as one line on stderr and exit code 2 (see :mod:`reslab.errors`); a bug keeps
its traceback. Heavy imports (torch, the packages) happen inside the handlers so ``reslab --help`` is fast.

Layout: for each sub-command ``X`` there is ``_add_X(subparsers)`` that declares its arguments and
``_cmd_X(args) -> int`` that runs it. Dependencies point one way: cli -> experiments -> analysis/train
-> data/models.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from reslab.errors import ReslabError

# ----------------------------------------------------------------------------------------- models


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo, or show one model's details")
    p.add_argument("pattern", nargs="?", default="*", help="glob over model names (default: all)")
    p.add_argument("--info", metavar="NAME", help="print one model's details")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    raise ReslabError("'reslab models' is not implemented yet")


# ------------------------------------------------------------------------------------------ train


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (the main job); `reslab train` alone runs the fashion_mnist recipe"
    )
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    raise ReslabError("'reslab train' is not implemented yet")


# ------------------------------------------------------------------------------------------- eval


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a run or checkpoint: top-1/top-5 error, per-class accuracy, confusion matrix"
    )
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    raise ReslabError("'reslab eval' is not implemented yet")


# -------------------------------------------------------------------------------------- reproduce


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce", help="re-run one of the paper's experiments (degradation, depth, shortcuts, highway)"
    )
    p.set_defaults(func=_cmd_reproduce)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    raise ReslabError("'reslab reproduce' is not implemented yet")


# ------------------------------------------------------------------------------------------- plot


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="redraw an experiment's or run's figures from its CSV logs")
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args: argparse.Namespace) -> int:
    raise ReslabError("'reslab plot' is not implemented yet")


# ---------------------------------------------------------------------------------------- analyze


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="take a network apart: gradients, responses, lesion, paths, landscape")
    p.set_defaults(func=_cmd_analyze)


def _cmd_analyze(args: argparse.Namespace) -> int:
    raise ReslabError("'reslab analyze' is not implemented yet")


# ----------------------------------------------------------------------------------------- export


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run or checkpoint to ONNX, torch.export or safetensors")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    raise ReslabError("'reslab export' is not implemented yet")


# ---------------------------------------------------------------------------------------- predict


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files with a trained run")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    raise ReslabError("'reslab predict' is not implemented yet")


# --------------------------------------------------------------------------------------- features


def _add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="print the multi-scale feature maps (stage outputs) of a model")
    p.set_defaults(func=_cmd_features)


def _cmd_features(args: argparse.Namespace) -> int:
    raise ReslabError("'reslab features' is not implemented yet")


# --------------------------------------------------------------------------------------------- main

_COMMANDS = (
    _add_models,
    _add_train,
    _add_eval,
    _add_reproduce,
    _add_plot,
    _add_analyze,
    _add_export,
    _add_predict,
    _add_features,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab",
        description="Deep residual networks: build, train, reproduce and take apart ResNets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reslab")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ReslabError as e:
        print(f"reslab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reslab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `reslab models | head`: stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
