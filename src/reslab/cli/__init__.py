"""The ``reslab`` command line: one sub-command per job, each a thin layer over the Python API.

Every user error ends as one line on stderr and exit code 2 (see :mod:`reslab.errors`); a bug keeps
its traceback. Heavy imports (torch, the packages) happen inside the handlers so ``reslab --help`` is fast.

Layout: each module of this package declares its sub-commands with ``add_X(subparsers)`` (the arguments)
and runs them with ``_cmd_X(args) -> int``: :mod:`~reslab.cli.models`, :mod:`~reslab.cli.train`,
:mod:`~reslab.cli.evaluate`, :mod:`~reslab.cli.experiments` (reproduce, plot), :mod:`~reslab.cli.analyze`,
:mod:`~reslab.cli.deploy` (export, predict, features), :mod:`~reslab.cli.verify`, :mod:`~reslab.cli.data`
(sample), :mod:`~reslab.cli.stylize`. Dependencies point one
way: cli -> experiments -> analysis/train -> data/models.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from reslab.cli.analyze import add_analyze
from reslab.cli.data import add_data
from reslab.cli.deploy import add_export, add_features, add_predict
from reslab.cli.evaluate import add_eval
from reslab.cli.experiments import add_plot, add_reproduce
from reslab.cli.models import add_models
from reslab.cli.stylize import add_stylize
from reslab.cli.train import add_train
from reslab.cli.verify import add_verify
from reslab.errors import INTERRUPTED_EXIT, USER_ERROR_EXIT, ReslabError, out_of_memory

COMMANDS = (
    add_models,
    add_train,
    add_eval,
    add_reproduce,
    add_plot,
    add_analyze,
    add_export,
    add_predict,
    add_features,
    add_verify,
    add_data,
    add_stylize,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``reslab`` parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="reslab",
        description="Deep residual networks: build, train, reproduce and take apart ResNets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reslab")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``reslab ARGV``; the exit code: 0 done, 1 a check failed, 2 a user error, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ReslabError as e:
        print(f"reslab: error: {e}", file=sys.stderr)
        return USER_ERROR_EXIT
    except (MemoryError, RuntimeError) as e:
        what = out_of_memory(e)
        if what is None:
            raise
        print(f"reslab: error: out of memory ({what}); try a smaller batch or input", file=sys.stderr)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        print("reslab: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except BrokenPipeError:
        # `reslab models | head`: stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
