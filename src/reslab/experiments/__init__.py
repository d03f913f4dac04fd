"""The paper's experiments, one command each: ``reslab reproduce NAME`` (NAME: a key of :data:`EXPERIMENTS`).

An experiment is a set of ordinary training runs (``reslab.train``) under one folder, a figure drawn from
their CSV logs, and ``report.md`` with a table beside the paper's numbers and a computed verdict per claim.

    from reslab.experiments import plan_experiment, run_experiment, redraw
    plan = plan_experiment("degradation", dataset="fashion-mnist", budget="quick")
    run_experiment(plan, jobs=1)          # trains what is not finished, then writes the report
    redraw(plan.out)                      # figures + report again, from the files alone
    publish(plan.out, "docs/results/degradation-standard")   # curves, report, figures: small, for git
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it, loaded on first use: ``reslab --help`` reads the registries of
# :mod:`~reslab.experiments.specs` and :mod:`~reslab.experiments.budgets` without importing torch.
_LAZY = {
    **dict.fromkeys(("Plan", "load_plan", "plan_experiment"), "plan"),
    "publish": "publishing",
    **dict.fromkeys(("redraw", "write_outputs"), "report"),
    **dict.fromkeys(("run_experiment", "run_states"), "runner"),
    **dict.fromkeys(("BUDGETS", "DATASETS"), "budgets"),
    **dict.fromkeys(("EXPERIMENTS", "QUICK_ITERATIONS", "Experiment", "RunSpec"), "specs"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"reslab.experiments.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'reslab.experiments' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
