"""``reslab reproduce`` (one of the paper's experiments) and ``reslab plot`` (redraw its figures)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from reslab.cli.options import add_device

if TYPE_CHECKING:
    from reslab.experiments.plan import Plan


def add_reproduce(sub: argparse._SubParsersAction) -> None:
    from reslab.experiments.budgets import BUDGETS, DATASETS
    from reslab.experiments.specs import EXPERIMENTS

    budgets = ", ".join(f"{b.name} ({b.brief})" for b in BUDGETS.values())
    p = sub.add_parser(
        "reproduce",
        help=f"re-run one of the paper's experiments ({', '.join(EXPERIMENTS)})",
        description=(
            "Train the experiment's networks (a rerun skips finished runs and continues interrupted ones; a run "
            "another experiment beside --out or --publish finished with the same config is copied, not retrained), "
            f"then draw its figure and write report.md beside the paper's numbers. Budgets: {budgets}."
        ),
    )
    p.add_argument("name", choices=tuple(EXPERIMENTS), help="the experiment")
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        type=_dataset,
        help=f"{', '.join(DATASETS)} (default: fashion-mnist)",
    )
    p.add_argument("--budget", default="quick", choices=tuple(BUDGETS), help="default: quick")
    p.add_argument(
        "--seeds",
        default=None,
        help="number of seeds (3 -> 0,1,2) or a comma list (default: the budget's, else 1); the seeds and "
        "depths the --out and --publish folders recorded stay in the report, only these are trained",
    )
    p.add_argument("--depths", default=None, help="comma list of depths (default: the experiment's)")
    p.add_argument("--out", default=None, help="experiment folder (default: experiments/NAME-DATASET-BUDGET)")
    add_device(p, default=None)
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="runs trained at once in worker processes (default: 1 on CPU, several per GPU on CUDA)",
    )
    p.add_argument("--data-dir", default=None, help="where the data set lives (default: the usual places)")
    _add_sweep_options(p)
    p.set_defaults(func=_cmd_reproduce)


def _add_sweep_options(p: argparse.ArgumentParser) -> None:
    """``reproduce``'s options that change the sweep rather than its runs: --set, --publish, --runs,
    --dry-run, --quiet."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training config field for every run (repeatable)",
    )
    p.add_argument(
        "--publish",
        default=None,
        metavar="DIR",
        help="committed results (e.g. docs/results/NAME-BUDGET): skip runs finished there with the same "
        "config, copy each finished run's curves there, write the report there",
    )
    p.add_argument(
        "--runs",
        default=None,
        metavar="NAMES",
        help="comma list: train only these runs (names as --dry-run lists them), e.g. those that fit in a "
        "sitting; the others stay as they are and the report covers every finished run",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan (runs and their state) and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from reslab.experiments import plan_experiment, run_experiment
    from reslab.experiments.plan import widen_plan
    from reslab.experiments.runner import check_run_names, planned_states
    from reslab.train.recipe import parse_set

    plan = plan_experiment(
        args.name,
        dataset=args.dataset,
        budget=args.budget,
        seeds=args.seeds,
        depths=args.depths,
        out=args.out,
        device=args.device,
        data_dir=args.data_dir,
        overrides=parse_set(args.overrides),
    )
    # the folders' recorded seeds and depths stay in the report; only the runs asked for are trained
    plan, asked = widen_plan(plan, [plan.out, args.publish])
    only = asked if args.runs is None else [n.strip() for n in args.runs.split(",") if n.strip()]
    check_run_names(plan, only)
    if args.dry_run:
        print(f"{plan.experiment} on {plan.dataset}, {plan.budget} budget -> {plan.out}")
        states = planned_states(plan, args.publish, only)
        for r in plan.runs:
            cfg = plan.configs[r.name]
            model = " ".join(str(x) for x in (cfg.get("model"), cfg.get("model_kwargs")) if x)
            print(f"  {r.name:<18} {model:<28} {states[r.name]}")
        _print_seed_plan(plan, args.publish)
        return 0
    result = run_experiment(plan, jobs=args.jobs, progress=not args.quiet, publish=args.publish, only=only)
    print(f"report: {result['report']}")
    for fig in result.get("figures", []):
        print(f"figure: {fig}")
    for c in result.get("claims", []):
        print(f"  [{c.verdict}] {c.claim}")
    return 0


def _print_seed_plan(plan: Plan, publish: str | None) -> None:
    """``--dry-run``'s second half: each claim's planned seeds and their measured cost, sized from the
    published runs where ``--publish`` names a folder with a plan, else from the ``--out`` folder."""
    from pathlib import Path

    from reslab.experiments.plan import PLAN_FILE
    from reslab.experiments.report import planned_seeds_lines

    folder = Path(publish) if publish and (Path(publish) / PLAN_FILE).is_file() else plan.out
    lines = planned_seeds_lines(plan, folder)
    if lines:
        print(f"\nPlanned seeds (80% power, alpha 0.05, spread measured in {folder}):")
        print("\n".join(lines).rstrip())


# ------------------------------------------------------------------------------------------- plot


def _dataset(name: str) -> str:
    """A data set an experiment trains on: :data:`~reslab.experiments.budgets.DATASETS` (and ``synthetic``,
    accepted for tests and demos, not advertised)."""
    from reslab.experiments.budgets import ALL_DATASETS, DATASETS

    if name not in ALL_DATASETS:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(DATASETS)}")
    return name


def add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="redraw an experiment's or run's figures from its CSV logs")
    p.add_argument("path", help="an experiment folder (figures + report.md) or a run directory (curves.png)")
    p.add_argument(
        "--publish",
        default=None,
        metavar="DIR",
        help="copy the finished runs' curves to DIR and write the report and figures there (PATH is only read)",
    )
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args: argparse.Namespace) -> int:
    from reslab.experiments import publish, redraw

    result = redraw(args.path) if args.publish is None else publish(args.path, args.publish)
    for fig in result.get("figures", []):
        print(f"figure: {fig}")
    if result.get("report"):
        print(f"report: {result['report']}")
    return 0
