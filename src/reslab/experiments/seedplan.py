"""Planned seeds: for each claim of an experiment, the test, the smallest effect it must detect, the seeds
that gives at 80% power and α = 0.05 from the measured spread, a cap, and what the missing seeds cost.

Each experiment's record (:data:`reslab.experiments.specs.EXPERIMENTS`) lists its :class:`PlannedTest`
records, one per claim its report judges (:mod:`reslab.experiments.claims`): the networks it compares,
the error it reads, the smallest effect of interest and where that number comes from. :func:`seed_plan`
sizes each from the runs finished so far (the pilot): the pooled seed-to-seed standard deviation of its
networks, statsmodels' power of the two-sided two-sample t-test (:func:`reslab.analysis.stats.planned_seeds`),
never fewer than :data:`~reslab.experiments.evidence.MIN_SEEDS` and never more than the cap; where the cap
is short of the power target it says the smallest effect the cap detects at 80% power instead. The cost is
measured: the mean core-hours (wall time x threads) of each network's finished runs, times the seeds still
to train. ``reslab reproduce --dry-run`` prints the plan; every report shows it (docs/evidence.md).

A claim's seeds are stated once: the first time its test is sized from a measured spread, the report records
the planned number in its ``experiment.json`` (a session's ``seed_plan``: :func:`record_plan`), and every
later report and dry run keeps that number (:func:`stated_plans`) while showing the spread measured since:
seeds added later do not move the plan they were trained for.

A difference of differences (the highway gain: four networks, weights ±1) has variance ``4 sd² / n``
where a two-network difference has ``2 sd² / n``: it is sized as a two-sample test with the spread scaled
by ``sqrt(4 / 2)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reslab.analysis import stats
from reslab.experiments.evidence import MIN_SEEDS, Claim
from reslab.experiments.results import Group, RunResult

# The smallest difference worth claiming, where a claim states no other: about two binomial standard
# errors of an error near 7% measured on Fashion-MNIST's 10,000 test images (reslab.analysis.stats).
SMALLEST = stats.MIN_MARGIN
SMALLEST_REASON = "the project's smallest difference worth claiming (~2 binomial SEs of a test error near 7%)"
CAP = 10  # the most seeds per network a plan asks for (a standard-budget run takes 0.4 to 2.3 core-hours)
HOURS_LIMIT = 12.0  # an experiment is brought to its plan here when the missing seeds cost no more


@dataclass(frozen=True)
class PlannedTest:
    """One claim's test: ``arms`` (variant, depth) are the networks it compares (two: ``b - a``; four: the
    difference of differences ``(b2 - a2) - (b1 - a1)``), ``metric`` the error it reads."""

    claim: str  # the claim, in a few words
    arms: tuple[tuple[str, int], ...]
    metric: str = "test_error"  # or "train_error"
    effect: float = SMALLEST  # points of error
    reason: str = SMALLEST_REASON
    cap: int = CAP
    test: str = "Welch, two-sided"


def arms_at(variant_a: str, variant_b: str, depth: int) -> tuple[tuple[str, int], tuple[str, int]]:
    return ((variant_a, depth), (variant_b, depth))


@dataclass
class SizedTest:
    """A :class:`PlannedTest` sized from the finished runs."""

    test: PlannedTest
    sd: float  # pooled seed-to-seed sd of its networks (NaN: not measured yet)
    planned: int | None  # seeds per network (None: needs a measured spread)
    beyond_cap: bool  # the power target needs more seeds than the cap
    detectable: float  # the smallest effect ``planned`` seeds detect at 80% power (NaN: unknown)
    have: dict[tuple[str, int], int]  # finished seeds per network
    stated: str = ""  # when ``planned`` was stated (an earlier report's record; "": sized now)


@dataclass
class SeedPlan:
    tests: list[SizedTest]
    seeds: dict[tuple[str, int], int]  # network -> planned seeds (the most any of its tests asks)
    have: dict[tuple[str, int], int]
    run_hours: dict[tuple[str, int], float]  # network -> measured core-hours per run (NaN: none finished)
    labels: dict[tuple[str, int], str]

    def to_train(self, key: tuple[str, int]) -> int:
        return max(0, self.seeds.get(key, 0) - self.have.get(key, 0))

    @property
    def hours(self) -> float:
        """Core-hours of the seeds still to train (NaN when a network needing seeds has no measured cost)."""
        need = [(k, self.to_train(k)) for k in self.seeds]
        return sum(n * self.run_hours[k] for k, n in need if n) if need else 0.0


def _core_hours(r: RunResult) -> float:
    return r.wall_s * max(1, r.threads) / 3600.0 if r.finished and math.isfinite(r.wall_s) else math.nan


def _pooled_sd(values: Sequence[Sequence[float]]) -> float:
    """Pooled sd over the networks with two or more seeds (NaN when none has)."""
    usable = [v for v in values if len(v) >= 2]
    dof = sum(len(v) - 1 for v in usable)
    if not dof:
        return math.nan
    return math.sqrt(sum((len(v) - 1) * stats.std(v) ** 2 for v in usable) / dof)


def _detectable(n: int, sd: float) -> float:
    """The difference ``n`` seeds per network detect with 80% power at α = 0.05 (two-sided t-test)."""
    from statsmodels.stats.power import TTestIndPower

    if not math.isfinite(sd) or n < 2:
        return math.nan
    d = TTestIndPower().solve_power(nobs1=n, alpha=stats.ALPHA, power=stats.POWER, ratio=1.0)
    return float(d) * sd


def size_test(
    test: PlannedTest, groups: dict[tuple[str, int], Group], stated: dict[str, Any] | None = None
) -> SizedTest:
    """``test`` sized from the finished runs of ``groups``; ``stated``: the plan recorded for it earlier,
    whose seeds are kept (the spread and the detectable effect are those measured now)."""
    finished = {k: [r for r in groups[k].runs if r.finished] for k in test.arms}
    values = [
        [getattr(r, test.metric) for r in runs if math.isfinite(getattr(r, test.metric))]
        for runs in finished.values()
    ]
    sd = _pooled_sd(values) * math.sqrt(len(test.arms) / 2.0)
    have = {k: len(v) for k, v in finished.items()}
    if stated:
        planned = int(stated["planned"])
        return SizedTest(test, sd, planned, bool(stated.get("beyond_cap")), _detectable(planned, sd), have,
                         str(stated.get("stated", ""))[:10])  # fmt: skip
    n = stats.planned_seeds(test.effect, sd, limit=max(test.cap, 1000)) if math.isfinite(sd) else None
    if n is None and not math.isfinite(sd):
        return SizedTest(test, sd, None, False, math.nan, have)
    beyond = n is None or n > test.cap
    planned = test.cap if beyond else max(MIN_SEEDS, n)
    return SizedTest(test, sd, planned, beyond, _detectable(planned, sd), have)


def seed_plan(
    tests: Sequence[PlannedTest], groups: Sequence[Group], stated: dict[str, dict[str, Any]] | None = None
) -> SeedPlan:
    """Size every test whose networks the experiment has (:class:`SeedPlan`), keeping the seeds ``stated``
    (:func:`stated_plans`) for the claims an earlier report planned."""
    by_key = {(g.variant, g.depth): g for g in groups}
    stated = stated or {}
    sized = [size_test(t, by_key, stated.get(t.claim)) for t in tests if all(k in by_key for k in t.arms)]
    seeds: dict[tuple[str, int], int] = {}
    for s in sized:
        for k in s.test.arms:
            seeds[k] = max(seeds.get(k, 0), s.planned or MIN_SEEDS)
    have = {k: sum(r.finished for r in g.runs) for k, g in by_key.items()}
    hours = {}
    for k, g in by_key.items():
        measured = [h for h in map(_core_hours, g.runs) if math.isfinite(h)]
        hours[k] = stats.mean(measured) if measured else math.nan
    return SeedPlan(sized, seeds, have, hours, {k: g.label for k, g in by_key.items()})


def note_short_of_plan(plan: SeedPlan | None, claims: Sequence[Claim]) -> None:
    """Each judged claim (one with a p-value) whose networks have fewer finished seeds than its planned
    test asks says so ("Judged with highway-20 at 3 of its planned 4 seeds."): its test is sized by the
    :class:`PlannedTest` over the same networks (of the same error, where two read one pair of networks)."""
    for c in claims if plan else []:
        keys = {(g.variant, g.depth) for g in c.groups}
        tests = [s for s in plan.tests if set(s.test.arms) == keys and s.planned]
        by_metric = [s for s in tests if ("train" in c.claim.lower()) == (s.test.metric == "train_error")]
        sized = (by_metric or tests or [None])[0]
        if sized is None or not math.isfinite(c.p):
            continue
        short = [
            f"{plan.labels[k]} at {sized.have[k]} of its planned {sized.planned} seeds"
            for k in sized.test.arms
            if sized.have[k] < sized.planned
        ]
        if short:
            c.sentence += f" Judged with {', '.join(short)}."


def stated_plans(sessions: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each claim's first recorded plan (``seed_plan`` records of the sessions, oldest first)."""
    out: dict[str, dict[str, Any]] = {}
    for s in sessions:
        for rec in s.get("seed_plan") or []:
            out.setdefault(rec["claim"], rec)
    return out


def new_statements(plan: SeedPlan, stated: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The records :func:`record_plan` adds: each test sized now from a measured spread, not stated before."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return [
        {
            "claim": s.test.claim,
            "planned": s.planned,
            "beyond_cap": s.beyond_cap,
            "sd": round(s.sd, 4),
            "stated": now,
        }
        for s in plan.tests
        if s.planned is not None and s.test.claim not in stated
    ]


def plan_lines(plan: SeedPlan) -> list[str]:
    """The plan as a markdown table and a cost line (``--dry-run`` prints it, report.md shows it)."""
    lines = [
        "| claim | test | error | smallest effect | why that effect | measured sd | seeds planned | have |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in plan.tests:
        t = s.test
        have = ", ".join(f"{plan.labels[k]} {s.have[k]}" for k in t.arms)
        if s.planned is None:
            seeds = f"{MIN_SEEDS} (no spread measured yet)"
        elif s.beyond_cap:
            seeds = f"{s.planned} = cap (80% power needs more; detects {s.detectable:.2f} points)"
        else:
            seeds = f"{s.planned} (detects {s.detectable:.2f} points)"
        if s.stated:
            seeds += f", stated {s.stated}"
        sd = f"{s.sd:.2f}" if math.isfinite(s.sd) else "—"
        metric = t.metric.replace("_error", "")
        lines.append(
            f"| {t.claim} | {t.test} | {metric} | {t.effect:.2f} | {t.reason} | {sd} | {seeds} | {have} |"
        )
    lines += ["", _cost_line(plan)]
    return lines


def _cost_line(plan: SeedPlan) -> str:
    need = {k: plan.to_train(k) for k in plan.seeds if plan.to_train(k)}
    if not need:
        return "Every network has its planned seeds."
    parts = [
        f"{plan.labels[k]} +{n}"
        + (
            f" ({plan.run_hours[k]:.2f} core-h each)"
            if math.isfinite(plan.run_hours[k])
            else " (cost not measured)"
        )
        for k, n in need.items()
    ]
    hours = plan.hours
    if not math.isfinite(hours):
        return (
            f"Still to train: {', '.join(parts)}; total cost unknown until each network has a finished run."
        )
    verdict = "within" if hours <= HOURS_LIMIT else "beyond"
    return (
        f"Still to train: {', '.join(parts)}: {hours:.1f} core-hours measured, {verdict} the "
        f"{HOURS_LIMIT:g} core-hours an experiment is brought to its plan for."
    )


# ------------------------------------------------------------------------- each experiment's tests
# Generated from the plan's depths as its claims are (reslab.experiments.claims); a test whose networks
# the plan does not train is dropped by seed_plan.


# A plain net this deep may not train at all at the standard budget: plain-110's training error differed by
# 14.5 points between its first two seeds (85.4%, 70.9%), so only a failure-sized gap is resolvable. The
# effect was set after that pilot, and the report says so.
PLAIN_FAILS = 110
FAILURE_EFFECT = 20.0
FAILURE_REASON = (
    "a failure to train: plain-110's first two seeds differ by 14.5 points (set after that pilot)"
)


def _sized(test: PlannedTest) -> PlannedTest:
    """``test`` with the failure-sized effect where it involves a plain net of :data:`PLAIN_FAILS` layers."""
    if any(v == "plain" and d >= PLAIN_FAILS for v, d in test.arms):
        return dataclasses.replace(test, effect=FAILURE_EFFECT, reason=FAILURE_REASON)
    return test


def degradation_tests(depths: Sequence[int]) -> list[PlannedTest]:
    lo, hi = min(depths), max(depths)
    tests = [
        PlannedTest("plain nets: deeper trains worse", (("plain", lo), ("plain", hi)), "train_error"),
        PlannedTest("ResNets: deeper trains no worse", (("resnet", lo), ("resnet", hi)), "train_error"),
        PlannedTest("ResNets: deeper tests no worse", (("resnet", lo), ("resnet", hi))),
    ]
    # the claim is judged at the deepest depth both families have (claims.degradation_claims)
    at = [
        PlannedTest(
            f"depth {hi}: ResNet trains better than plain", arms_at("resnet", "plain", hi), "train_error"
        )
    ]
    return [_sized(t) for t in tests + (at if hi != lo else [])]


def depth_tests(depths: Sequence[int]) -> list[PlannedTest]:
    lo = min(depths)
    targets = [d for d in (56, 110) if d in depths and d != lo] or [max(depths)]
    return [
        PlannedTest(f"ResNet-{lo} → ResNet-{d}: lower test error", (("resnet", lo), ("resnet", d)))
        for d in targets
    ]


_T3 = "the paper's ImageNet gap (Table 3: {})"


def shortcut_tests(depths: Sequence[int]) -> list[PlannedTest]:
    d = min(depths)
    return [
        PlannedTest("worst option (C) better than plain", arms_at("C", "plain", d)),
        PlannedTest(
            "B ≤ A", arms_at("B", "A", d), effect=0.51, reason=_T3.format("A 25.03 vs B 24.52 top-1")
        ),
        PlannedTest(
            "C ≤ B", arms_at("C", "B", d), effect=0.33, reason=_T3.format("B 24.52 vs C 24.19 top-1")
        ),
    ]


def highway_tests(depths: Sequence[int]) -> list[PlannedTest]:
    lo, hi = min(depths), max(depths)
    tests: list[PlannedTest] = []
    for d in sorted(depths):
        tests.append(PlannedTest(f"depth {d}: ResNet better than highway", arms_at("resnet", "highway", d)))
        tests.append(
            _sized(PlannedTest(f"depth {d}: ResNet better than plain", arms_at("resnet", "plain", d)))
        )
    if lo != hi:
        tests.append(
            PlannedTest("ResNets: deeper trains no worse", (("resnet", lo), ("resnet", hi)), "train_error")
        )
        gain = (("resnet", lo), ("resnet", hi), ("highway", lo), ("highway", hi))
        tests.append(
            PlannedTest(
                "ResNets gain more from depth than highway", gain, "train_error", test="Welch contrast"
            )
        )
    return tests


def relatives_tests(depths: Sequence[int]) -> list[PlannedTest]:
    tests = [
        PlannedTest(f"depth {d}: {name} better than ResNet", arms_at(v, "resnet", d))
        for d in sorted(depths)
        for v, name in (("seresnet", "SE-ResNet"), ("preact", "pre-act"))
    ]
    return [*tests, PlannedTest("DenseNet-BC-100 better than ResNet-56", (("densenet", 100), ("resnet", 56)))]
