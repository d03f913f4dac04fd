"""``report.md`` and ``results.csv`` of an experiment folder, from its plan and its runs' files."""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from reslab import _io
from reslab.analysis import stats
from reslab.experiments import looks, seedplan
from reslab.experiments.budgets import ALL_DATASETS, BUDGETS
from reslab.experiments.evidence import MIN_SEEDS, Claim, judge
from reslab.experiments.paper import against_reference
from reslab.experiments.plan import PLAN_FILE, Plan, load_plan, read_sessions, rewrite_sessions
from reslab.experiments.plotting import caption
from reslab.experiments.pooled import copied_runs, pooled_runs
from reslab.experiments.results import (
    Group,
    RunResult,
    fmt,
    fmt_range,
    group_runs,
    read_run,
    write_results_csv,
)
from reslab.experiments.session import machine_line, wall_time_line
from reslab.experiments.specs import EXPERIMENTS, parse_depths
from reslab.provenance import public_path


def collect(plan: Plan, out: Path) -> list[RunResult]:
    """The plan's runs (each copied one credited to the experiment that trained it:
    :func:`reslab.experiments.pooled.copied_runs`), then the pool's: finished seeds of its networks trained
    beside ``out`` (:func:`reslab.experiments.pooled.pooled_runs`)."""
    pooled = pooled_runs(plan, out)
    taken = {(r.variant, r.depth, r.seed) for r in pooled}  # planned here, finished elsewhere: the pool's
    own = [read_run(plan.run_dir(r), r) for r in plan.runs if (r.variant, r.depth, r.seed) not in taken]
    copied = copied_runs(plan, out)  # planned here, trained by another experiment and copied: credited to it
    for result in own:
        result.source = copied.get(result.name, "")
    return own + pooled


def write_outputs(out: str | Path, *, look: bool = False) -> dict[str, Any]:
    """Redraw the figure(s), rewrite results.csv and report.md of experiment folder ``out``: the figure
    and the claims are the experiment's record's (:data:`~reslab.experiments.specs.EXPERIMENTS`); with
    ``look`` (an invocation that trained something) the claims' p-values are recorded as a look at the
    data (:mod:`reslab.experiments.looks`)."""
    out = Path(out)
    plan = load_plan(out)
    results = collect(plan, out)
    groups = group_runs(results)
    exp = EXPERIMENTS[plan.experiment]
    title = f"{exp.title} — {plan.dataset}, {plan.budget} budget"
    started = [r for r in results if r.metrics or r.train_log]
    drawn = [g for g in groups if any(r in started for r in g.runs)]
    figures = [exp.plot(drawn, out / f"{exp.name}.png", title, plan.dataset)] if started else []
    claims = judge(exp.claims, groups)
    if look:
        looks.record_look(out, claims)
        recorded = read_sessions(out)
        seeds = size_seeds(plan, groups, recorded)
        if seeds:  # the claims sized for the first time now are stated now
            record_plan(out, seedplan.new_statements(seeds, seedplan.stated_plans(recorded)))
    sessions = read_sessions(out)
    looks.hold_to_looks(claims, sessions)
    seeds = size_seeds(plan, groups, sessions)
    seedplan.note_short_of_plan(seeds, claims)
    write_results_csv(out / "results.csv", results)
    text = render_report(plan, results, groups, claims, figures, sessions, seeds)
    _io.write_text(out / "report.md", text)
    return {"figures": figures, "report": out / "report.md", "claims": claims, "groups": groups}


def reproduce_command(plan: Plan, publish: str | None = None) -> str:
    """The command that (re)makes this experiment: canonical flags, the user's ``--set`` overrides."""
    exp = EXPERIMENTS[plan.experiment]
    parts = ["reslab reproduce", plan.experiment, f"--dataset {plan.dataset}", f"--budget {plan.budget}"]
    n = len(plan.seeds)
    parts.append(
        f"--seeds {n}" if plan.seeds == tuple(range(n)) else f"--seeds {','.join(map(str, plan.seeds))}"
    )
    if plan.depths != parse_depths(None, exp.name, plan.budget):
        parts.append(f"--depths {','.join(map(str, plan.depths))}")
    parts += [f"--set {k}={_set_value(v)}" for k, v in plan.extra.items()]
    if plan.device != "auto":
        parts.append(f"--device {plan.device}")
    parts.append(f"--out {publish_source(plan) or public_path(plan.out)}")
    if publish:
        parts.append(f"--publish {public_path(publish)}")
    return " ".join(parts)


def _set_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def publish_source(plan: Plan) -> str | None:
    """The experiment folder a published folder was copied from (``experiment.json``'s ``source``), as a
    published record names it (:func:`reslab.provenance.public_path`: a record written before that rule
    may hold the training machine's absolute path)."""
    with contextlib.suppress(OSError, ValueError):
        v = json.loads((plan.out / PLAN_FILE).read_text(encoding="utf-8")).get("source")
        return public_path(v) if isinstance(v, str) else None
    return None


def _eval_set(results: list[RunResult], dataset: str) -> str:
    sizes = sorted({r.n_eval for r in results if r.eval_split == "test"})
    if not sizes:
        return "a held-out split of the training images (the test set was not evaluated)"
    if sizes == [10000]:
        return f"the full {dataset} test set (10,000 images)"
    return "the first " + "/".join(f"{n:,}" for n in sizes) + f" images of the {dataset} test set"


def render_report(
    plan: Plan,
    results: list[RunResult],
    groups: list[Group],
    claims: list[Claim],
    figures: list[Path],
    sessions: list[dict[str, Any]],
    seeds: seedplan.SeedPlan | None = None,
) -> str:
    """The text of ``report.md``: its sections in order, each rendered by a function of its own; ``seeds``:
    the claims' sized seed plan (:func:`size_seeds`)."""
    sections = [
        _header_section(plan, results),
        _what_was_run_section(plan, results, sessions),
        _figure_section(plan, figures, groups, claims),
        _results_section(plan, results, groups),
        _claims_section(claims),
        planned_seeds_section(seeds),
        looks.looks_section(claims, sessions),
        _undecided_section(claims),
    ]
    return "\n".join(line for lines in sections for line in lines)


def _first_config(plan: Plan) -> dict[str, Any]:
    return plan.configs[plan.runs[0].name] if plan.runs else {}


def _header_section(plan: Plan, results: list[RunResult] | None = None) -> list[str]:
    """The title, what departs from the paper (data set, budget, recipe), the command that makes the
    experiment, where a published folder came from."""
    exp = EXPERIMENTS[plan.experiment]
    source = publish_source(plan)
    return [
        f"# {exp.title}",
        "",
        f"Reproduces {exp.paper_ref} on **{plan.dataset}** at the **{plan.budget}** budget. "
        + _against_paper(plan, results or [])
        + " Command:",
        "",
        "```bash",
        reproduce_command(plan, str(plan.out) if source else None),
        "```",
        "",
        (
            f"These are the committed results of that command (copied from `{source}` without checkpoints): "
            "rerunning it skips every run published here with the same config and trains the rest. "
            if source
            else ""
        )
        + f"Redraw with `reslab plot {public_path(plan.out)}`.",
        "",
    ]


def _against_paper(plan: Plan, results: list[RunResult]) -> str:
    """The data set, the iterations per run (the runs' most common) against the reference's schedule and
    the recipe's deviations (:func:`reslab.experiments.paper.against_reference`)."""
    counts = Counter(r.iterations or r.steps for r in results if r.finished and (r.iterations or r.steps))
    iters = counts.most_common(1)[0][0] if counts else _first_config(plan).get("iterations")
    return against_reference(EXPERIMENTS[plan.experiment].paper, plan.dataset, iters, plan.recipe)


def _what_was_run_section(plan: Plan, results: list[RunResult], sessions: list[dict[str, Any]]) -> list[str]:
    """Networks, seeds, budget, config, evaluation images, machine and wall time."""
    exp = EXPERIMENTS[plan.experiment]
    n_done = sum(r.finished for r in results)
    return [
        "## What was run",
        "",
        f"- Networks: {', '.join(dict.fromkeys(r.label for r in results))} ({exp.description}).",
        f"- Seeds: {', '.join(map(str, plan.seeds))}; {len(results)} runs, {n_done} finished.",
        *_pooled_line(results),
        f"- Budget `{plan.budget}`: {BUDGETS[plan.budget].description}.",
        _config_line(plan),
        f"- Test error is measured on {_eval_set(results, plan.dataset)}, the same images for every run.",
        machine_line(plan, sessions),
        wall_time_line(results, sessions),
        "",
    ]


def _pooled_line(results: list[RunResult]) -> list[str]:
    """The runs trained elsewhere, by experiment, each with its git revision: the plan's runs copied from the
    experiment that trained them, and the pool's (finished seeds of these networks trained by other
    experiments, or here by an earlier invocation with more seeds)."""
    pooled = [r for r in results if r.source]
    if not pooled:
        return []
    by_source: dict[str, list[str]] = {}
    for r in sorted(
        pooled, key=lambda r: (r.source.partition(" (")[0], r.family, r.depth, r.variant, r.seed)
    ):
        experiment, _, revision = r.source.partition(" (")
        by_source.setdefault(experiment, []).append(
            f"{r.label} s{r.seed}" + (f" ({revision}" if revision else "")
        )
    listed = "; ".join(f"from {src}: {', '.join(runs)}" for src, runs in by_source.items())
    return [
        "- Trained elsewhere (the same config: copied from the experiment that trained it, or found in the "
        "pool, trained by another experiment or by an earlier invocation of this one with more seeds; "
        f"counted here too): {listed}."
    ]


_SHOWN_CONFIG = (
    "iterations",
    "epochs",
    "batch_size",
    "lr",
    "milestones",
    "subset",
    "eval_subset",
    "val_split",
    "eval_every",
)


def _config_line(plan: Plan) -> str:
    cfg0 = _first_config(plan)
    shown = {k: cfg0[k] for k in _SHOWN_CONFIG if k in cfg0}
    return (
        f"- Config: recipe `{plan.recipe}`"
        + (" with " + ", ".join(f"`{k}={v}`" for k, v in shown.items()) if shown else "")
        + (", user overrides " + ", ".join(f"`{k}={v}`" for k, v in plan.extra.items()) if plan.extra else "")
        + ". Every run's full config is in `runs/<run>/config.yaml`."
    )


def _figure_section(plan: Plan, figures: list[Path], groups: list[Group], claims: list[Claim]) -> list[str]:
    """The figure(s) and how to read them (:func:`reslab.experiments.plotting.caption`); nothing when no
    run has started."""
    if not figures:
        return []
    exp = EXPERIMENTS[plan.experiment]
    return [
        "## Figure",
        "",
        *(f"![{plan.experiment}]({Path(f).name})" for f in figures),
        "",
        caption(exp.plot, groups, plan.dataset, claims),
        "",
    ]


def _results_section(plan: Plan, results: list[RunResult], groups: list[Group]) -> list[str]:
    """One row per network, ours beside the paper's, then the notes that say how to compare them."""
    exp = EXPERIMENTS[plan.experiment]
    multi = any(g.n > 1 for g in groups)
    hdr = ["network", "depth", "runs", "final training error %", "final test error %"]
    if multi:
        hdr.append("test error range %")
    hdr += ["best test error %", exp.paper.header]
    return [
        "## Results",
        "",
        "| " + " | ".join(hdr) + " |",
        "|" + "---|" * len(hdr),
        *(_table_row(exp.paper.cell(g), g, multi) for g in sorted(groups, key=exp.row_key)),
        "",
        " ".join(_table_notes(plan, results, multi)),
        "",
    ]


def _table_row(paper_cell: str, g: Group, multi: bool) -> str:
    tr = fmt(g.mean("train_error"), g.std("train_error") if multi else math.nan)
    te = fmt(g.mean("test_error"), g.std("test_error") if multi else math.nan)
    be = fmt(g.mean("best_test_error"))
    open_runs = g.open_runs()
    runs = f"{sum(r.finished for r in g.runs)}/{g.n}" + (f" ({open_runs})" if open_runs else "")
    cells = [g.label, str(g.depth), runs, tr, te]
    if multi:
        cells.append(fmt_range(*g.range("test_error")))
    cells += [be, paper_cell]
    return "| " + " | ".join(cells) + " |"


def _table_notes(plan: Plan, results: list[RunResult], multi: bool) -> list[str]:
    paper = EXPERIMENTS[plan.experiment].paper
    notes = [f"Paper numbers: {paper.source}."]
    if multi:
        notes.append("Ours: mean ± sample standard deviation over seeds; range: the seeds' minimum–maximum.")
    if paper.dataset not in ALL_DATASETS:  # measured on data no run here trains on
        notes.append(f"{paper.scope}; compare the ordering, not the values.")
    elif plan.dataset != paper.dataset:
        notes.append(
            f"{paper.scope}; on {plan.dataset}"
            + (f" at the {plan.budget} budget" if plan.budget != "paper" else "")
            + " compare the ordering, not the values."
        )
    elif plan.budget != "paper":
        notes.append(
            f"The {plan.budget} budget is far shorter than the paper's schedule: compare the ordering."
        )
    if plan.dataset == "fashion-mnist" and any(r.params for r in results):
        notes.append(
            "`params` in results.csv counts the networks as trained here, on 1-channel 28x28 images: the first "
            "convolution has 3x3x16x2 = 288 fewer weights than with the 3-channel CIFAR input of the paper's, "
            "the README's and docs/models.md's counts (ResNet-20: 269,434 here, 269,722 there)."
        )
    if any(r.eval_split == "val" for r in results):
        notes.append(
            "The test set was not evaluated in (some of) these runs (the smoke budget evaluates a small held-out "
            "split of the training data instead): their 'test error' is that held-out error."
        )
    return notes


def size_seeds(plan: Plan, groups: list[Group], sessions: list[dict[str, Any]]) -> seedplan.SeedPlan | None:
    """The experiment's claims' tests sized from ``groups`` (:mod:`reslab.experiments.seedplan`), each
    claim's seeds as first stated in ``sessions``; ``None`` for an experiment that declares none."""
    tests = EXPERIMENTS[plan.experiment].tests(plan.depths)
    return seedplan.seed_plan(tests, groups, seedplan.stated_plans(sessions)) if tests else None


def record_plan(out: Path, records: list[dict[str, Any]]) -> None:
    """Add ``records`` (the plans stated now: :func:`reslab.experiments.seedplan.new_statements`) to the
    newest session entry of ``out``'s ``experiment.json``."""
    sessions = read_sessions(out)
    if sessions and records:
        sessions[-1]["seed_plan"] = [*sessions[-1].get("seed_plan", []), *records]
        rewrite_sessions(out, sessions)


def planned_seeds_section(seeds: seedplan.SeedPlan | None) -> list[str]:
    """Each claim's planned test and seeds (as first stated), the spread measured so far, and what the rest
    costs (``reslab reproduce --dry-run`` prints the same table: :func:`planned_seeds_lines`)."""
    if seeds is None:
        return []
    return [
        "## Planned seeds",
        "",
        "Each claim's test and the smallest effect it must detect, with the seeds per network that give 80% "
        f"power at α = {stats.ALPHA:g} (two-sided; statsmodels) for the seed-to-seed spread measured when the "
        f"plan was first stated (at least {MIN_SEEDS}, at most the cap; kept since, while the spread and the "
        "detectable effect shown are measured now); the cost is the measured core-hours of each network's "
        "finished runs (rules: [docs/evidence.md](../../evidence.md)).",
        "",
        *seedplan.plan_lines(seeds),
        "",
    ]


def planned_seeds_lines(plan: Plan, folder: str | Path) -> list[str]:
    """The seed plan of ``plan`` sized from the runs finished in ``folder`` (its runs and the pool's), with
    the seeds its records stated."""
    import dataclasses

    folder = Path(folder)
    groups = group_runs(collect(dataclasses.replace(plan, out=folder), folder))
    seeds = size_seeds(plan, groups, read_sessions(folder))
    return seedplan.plan_lines(seeds) if seeds else []


def _claims_section(claims: list[Claim]) -> list[str]:
    """The stated test, then one verdict per claim."""
    return [
        "## Claims",
        "",
        "Each verdict is computed from the table by a stated test (the rules: "
        "[docs/evidence.md](../../evidence.md)). With two or more seeds per network: Welch's t-test "
        f"(unequal variances), two-sided, a difference claimed when p < {stats.ALPHA:g}; the report's claims "
        "are one family, each p Holm-adjusted over it (the verdict follows the adjusted p); with one run per "
        "network: the binomial error of an error rate on that many images (the evaluation images for test "
        "error, the last window of training batches for training error), a difference claimed beyond "
        f"max({stats.MIN_MARGIN:g} points, 2 standard errors). One run per network says nothing about the "
        f"seed-to-seed spread, and no claim is SUPPORTED from fewer than {MIN_SEEDS} seeds per network: the "
        "test may point a claim's way, the verdict then stays INCONCLUSIVE.",
        "",
        *(c.markdown() for c in claims),
        "",
    ]


def _undecided_section(claims: list[Claim]) -> list[str]:
    """What the budget and seeds leave open: each inconclusive claim's reason."""
    items = [
        f"- {c.claim}: "
        + (
            c.undecided
            or "its test does not decide it from the runs finished so far (the claim says which are to come)."
        )
        for c in claims
        if c.verdict == "inconclusive"
    ] or ["- Nothing: every claim above is decided by its test at this budget and these seeds."]
    return ["## What this budget cannot decide", "", *items, ""]


def redraw(path: str | Path) -> dict[str, Any]:
    """``reslab plot PATH``: an experiment folder gets its figures and report redrawn, a run directory
    its ``curves.png``."""
    path = Path(path)
    if (path / "experiment.json").is_file():
        return write_outputs(path)
    if (path / "metrics.csv").is_file() or (path / "train_log.csv").is_file():
        from reslab.experiments.plotting import plot_run

        return {"figures": [plot_run(path)]}
    from reslab.errors import ReslabError

    raise ReslabError(
        f"{path} is neither an experiment folder (experiment.json) nor a run directory (metrics.csv)"
    )
