"""The paper's experiments, one command each: ``reslab reproduce degradation|depth|shortcuts|highway``.

An experiment is a set of ordinary training runs (``reslab.train``) under one folder, a figure drawn from
their CSV logs, and ``report.md`` with a table beside the paper's numbers and a computed verdict per claim.

    from reslab.experiments import plan_experiment, run_experiment, redraw
    plan = plan_experiment("degradation", dataset="fashion-mnist", budget="quick")
    run_experiment(plan, jobs=1)          # trains what is not finished, then writes the report
    redraw(plan.out)                      # figures + report again, from the files alone
    publish(plan.out, "docs/results/degradation-quick")   # curves, report, figures: small, for git
"""

from __future__ import annotations

from reslab.experiments.plan import Plan, load_plan, plan_experiment
from reslab.experiments.publish import publish
from reslab.experiments.report import redraw, write_outputs
from reslab.experiments.runner import run_experiment, run_states, run_status
from reslab.experiments.specs import BUDGETS, DATASETS, EXPERIMENTS, QUICK_ITERATIONS, RunSpec

__all__ = [
    "BUDGETS",
    "DATASETS",
    "EXPERIMENTS",
    "QUICK_ITERATIONS",
    "Plan",
    "RunSpec",
    "load_plan",
    "plan_experiment",
    "publish",
    "redraw",
    "run_experiment",
    "run_states",
    "run_status",
    "write_outputs",
]
