"""``reslab verify``: check a run directory without changing it."""

from __future__ import annotations

import argparse


def add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check a run directory: checkpoint checksums, config, logs; say what resume would do",
        description="Check every checkpoint generation (last, prev, best) against its SHA-256 manifest, the "
        "config and the logs against the checkpoints, and say what `reslab train --resume` would do. Reads "
        "only. Exit code 0: everything sound; 1: something is damaged; 2: not a run directory.",
    )
    p.add_argument("run", metavar="RUN_DIR", help="a run directory")
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from reslab.train.verify import verify_run

    report = verify_run(args.run)
    print("\n".join(report.lines()))
    return 0 if report.sound else 1
