"""One invocation of an experiment on record: its entry in ``experiment.json``'s ``sessions``.

The entry says what ran where and for how long (command, host, CPUs and their model, device, runs at a
time, wall time), which runs it trained, reused and lost, and how it ended; a report adds the entries up
across sittings (:mod:`reslab.experiments.report`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reslab.experiments.plan import Plan, read_sessions, write_plan
from reslab.experiments.results import RunResult


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


# ------------------------------------------------------------------ the invocations, as a report says them


def run_summaries(plan: Plan) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in plan.runs:
        with contextlib.suppress(OSError, ValueError):
            d = json.loads((plan.run_dir(r) / "summary.json").read_text(encoding="utf-8"))
            if isinstance(d, dict):
                out.append(d)
    return out


def run_devices(plan: Plan) -> list[str]:
    """The runs' devices (summary.json's ``device``), each once. Runs trained before revision 2df67e5
    recorded "1 threads": read as "1 thread", so that old and new runs on one machine name one device."""
    devs: list[str] = []
    for d in run_summaries(plan):
        v = d.get("device_name") or d.get("device")
        if not isinstance(v, str) or not v:
            continue
        v = v.replace(" 1 threads)", " 1 thread)")
        if v not in devs:
            devs.append(v)
    return devs


def run_revisions(plan: Plan) -> list[str]:
    """The code revisions the runs were trained with (summary.json's ``git_revision``), short form."""
    revs = {d.get("git_revision") for d in run_summaries(plan)}
    return sorted(
        r[:12] + ("-dirty" if r.endswith("-dirty") else "") for r in revs if isinstance(r, str) and r
    )


def hms(s: float) -> str:
    if not math.isfinite(s):
        return "—"
    s = round(s)
    return f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def invocations(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sessions that are invocations of ``reslab reproduce``: not the entries a report rewritten for
    new runs in the pool adds to hold its look (:func:`reslab.experiments.looks.record_look`), which ran
    nothing, on no machine on record."""
    return [s for s in sessions if "host" in s or not s.get("looks") or s.get("trained")]


def machine_line(plan: Plan, sessions: list[dict[str, Any]]) -> str:
    """The machines of the invocations (host, CPUs, CPU model; "not recorded" for what an invocation did
    not record), the runs' devices, the software and the revisions the runs were trained at."""
    devs = run_devices(plan)
    # One entry per machine (host, CPU count): invocations recorded before the CPU model was, or where it
    # could not be read, name the same machine as those that have it.
    models: dict[tuple[str, str], set[str]] = {}
    for s in invocations(sessions):
        host = str(s.get("host") or "host not recorded")
        cpus = f"{s['cpus']} CPUs" if s.get("cpus") else "CPUs not recorded"
        known = models.setdefault((host, cpus), set())
        if s.get("cpu_model"):
            known.add(str(s["cpu_model"]))
    hosts = [
        f"{host} ({cpus}" + (f", {m}" if m else "") + ")"
        for host, cpus in sorted(models)
        for m in sorted(models[host, cpus]) or [None]
    ]
    return (
        f"- Machine: {', '.join(hosts) if hosts else 'not recorded'}; device {', '.join(devs) if devs else plan.device}; "
        f"software: {_versions()}"
        + (f"; trained at revision {', '.join(run_revisions(plan))}" if run_revisions(plan) else "")
        + "."
    )


def wall_time_line(results: list[RunResult], sessions: list[dict[str, Any]]) -> str:
    sessions = invocations(sessions)
    wall = sum(float(s.get("wall_s") or 0) for s in sessions)
    run_wall = sum(r.wall_s for r in results if math.isfinite(r.wall_s))
    jobs = sorted({int(s.get("jobs", 1)) for s in sessions if s.get("jobs")})
    # An invocation still "running" in the record was killed (or is this one): its wall time is the
    # time to its last finished run, or unknown when none finished.
    open_ = [s for s in sessions if s.get("status") == "running"]
    unknown = sum(1 for s in open_ if s.get("wall_s") is None)
    return (
        f"- Wall time: {hms(wall)} over {len(sessions)} invocation(s)"
        + (f" ({'/'.join(map(str, jobs))} at a time)" if jobs else "")
        + (
            f", {len(open_)} of them unfinished when this was written (counted to their last finished run"
            + (f"; {unknown} finished none and count 0)" if unknown else ")")
            if open_
            else ""
        )
        + f"; the runs' own training time adds up to {hms(run_wall)}."
    )


def _versions() -> str:
    from reslab.provenance import versions

    v = versions()
    parts = [f"reslab {v['reslab']}", f"Python {v['python']}", f"torch {v['torch']}"]
    return ", ".join(parts + ([f"CUDA {v['cuda']}"] if "cuda" in v else []))
