"""Run ``reslab`` in a child process that starts in milliseconds (a forkserver with torch preloaded).

A fresh ``python -m reslab`` pays ~3 s of imports; the fault-injection tests start a dozen of them. The
forkserver imports torch and reslab once, without running any torch op (so no thread pool is forked), and
each child is a fork of it that runs :func:`reslab.cli.main` with ``RESLAB_FAULT`` set.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

_CTX = None


def context():
    global _CTX
    if _CTX is None:
        _CTX = multiprocessing.get_context("forkserver")
        _CTX.set_forkserver_preload(["torch", "reslab.cli", "reslab.train.engine", "reslab.data"])
    return _CTX


def _child(argv: list[str], fault: str | None, log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if fault:
        os.environ["RESLAB_FAULT"] = fault
    else:
        os.environ.pop("RESLAB_FAULT", None)
    from reslab.cli import main

    try:
        rc = main(argv)
    except BaseException:  # a traceback is a bug: keep it in the log, exit 99
        import traceback

        traceback.print_exc()
        rc = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def start(argv: list[str], fault: str | None, log: Path):
    p = context().Process(target=_child, args=(list(argv), fault, str(log)))
    p.start()
    return p


def run(argv: list[str], fault: str | None, log: Path, timeout: float = 120.0) -> int:
    """Run ``reslab argv`` in a child; its exit code (``-9`` when SIGKILLed)."""
    p = start(argv, fault, log)
    p.join(timeout)
    if p.exitcode is None:
        p.kill()
        p.join()
        raise AssertionError(f"reslab {' '.join(argv)} (fault {fault}) did not finish in {timeout} s")
    return p.exitcode
