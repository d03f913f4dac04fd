"""One invocation of an experiment on record: its entry in ``experiment.json``'s ``sessions``.

The entry says what ran where and for how long (command, host, CPUs and their model, device, runs at a
time, wall time), which runs it trained, reused and lost, and how it ended; a report adds the entries up
across sittings (:mod:`reslab.experiments.report`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reslab.experiments.plan import Plan, read_sessions, write_plan


def _cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo's "model name"), else platform's guess."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _command_line() -> str:
    """This invocation as typed: ``reslab reproduce ...`` (not the interpreter's path to ``__main__.py``)."""
    if not sys.argv or not sys.argv[0]:
        return ""
    head = Path(sys.argv[0])
    prog = "reslab" if head.name in ("reslab", "__main__.py") else str(head)
    return " ".join([prog, *sys.argv[1:]])


@dataclass
class SessionRecord:
    """This invocation's entry in ``experiment.json``: written as ``running`` when it starts, with its
    wall time, the runs it trained, reused and lost, and how it ended when it stops."""

    plan: Plan
    earlier: list[dict[str, Any]]
    entry: dict[str, Any]
    started: float

    @classmethod
    def start(cls, plan: Plan) -> SessionRecord:
        earlier = read_sessions(plan.out)
        started = time.time()
        entry: dict[str, Any] = {
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": _command_line(),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "device": plan.device,
        }
        write_plan(plan, [*earlier, {**entry, "status": "running"}])
        return cls(plan, earlier, entry, started)

    def progress(self, trained: list[str]) -> None:
        """Record the wall time so far and the runs finished so far (status still ``running``), so that
        an invocation killed later (SIGKILL, a machine taken away) leaves what it did on record."""
        self.entry.update(wall_s=round(time.time() - self.started, 2), trained=list(trained))
        write_plan(self.plan, [*self.earlier, {**self.entry, "status": "running"}])

    def finish(self, status: str, trained: list[str], reused: dict[str, str], failed: list[str]) -> float:
        """Write the entry with ``status`` (``finished`` or ``interrupted``); returns the wall time. An
        interrupted invocation lists as trained only the runs it finished, not the one it stopped."""
        wall = time.time() - self.started
        self.entry.update(wall_s=round(wall, 2), trained=list(trained), status=status)
        if reused:
            self.entry["reused"] = reused
        if failed:
            self.entry["failed"] = failed
        write_plan(self.plan, [*self.earlier, self.entry])
        return wall
