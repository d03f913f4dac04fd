"""The planned seeds of each claim (reslab.experiments.seedplan): sized from the measured spread by the
two-sample t-test's power, floored at 3 seeds, capped, costed from the finished runs' core-hours."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from reslab.experiments import seedplan
from reslab.experiments.results import Group, RunResult
from reslab.experiments.seedplan import PlannedTest, seed_plan
from reslab.experiments.specs import EXPERIMENTS


def _net(variant: str, depth: int, errors: list[float], *, wall_s: float = 3600.0, threads: int = 1) -> Group:
    """A network whose seeds have these test (and training) errors, each run ``wall_s`` on ``threads``."""
    common = {"finished": True, "steps": 10, "iterations": 10, "n_eval": 10000, "n_train": 5000}
    runs = [
        RunResult(
            f"{variant}{depth}-s{i}",
            f"{variant}-{depth}",
            variant,
            variant,
            depth,
            i,
            train_error=e,
            test_error=e,
            best_test_error=e,
            eval_split="test",
            wall_s=wall_s,
            params=None,
            threads=threads,
            **common,
        )
        for i, e in enumerate(errors)
    ]
    return Group(f"{variant}-{depth}", variant, variant, depth, runs)


def _power(n: int, d: float) -> float:
    """Power of the two-sided two-sample t-test at 5% with n per group, from SciPy's noncentral t."""
    df, nc = 2 * n - 2, d * math.sqrt(n / 2)
    crit = st.t.isf(0.025, df)
    return st.nct.sf(crit, df, nc) + st.nct.cdf(-crit, df, nc)


def test_a_claim_gets_the_fewest_seeds_with_80_percent_power_never_fewer_than_three() -> None:
    a, b = _net("resnet", 20, [7.0, 7.4, 7.8, 7.2]), _net("resnet", 56, [7.1, 7.3, 7.9])
    sd = math.sqrt((3 * st.tstd([7.0, 7.4, 7.8, 7.2]) ** 2 + 2 * st.tstd([7.1, 7.3, 7.9]) ** 2) / 5)
    test = PlannedTest("deeper is better", (("resnet", 20), ("resnet", 56)), effect=0.5)
    sized = seed_plan([test], [a, b]).tests[0]
    assert sized.sd == pytest.approx(sd)
    n = sized.planned
    assert _power(n, 0.5 / sd) >= 0.8 > _power(n - 1, 0.5 / sd)
    assert sized.detectable <= 0.5 < seedplan._detectable(n - 1, sd)
    # and statsmodels' own answer: solve_power's (fractional) n per group, rounded up
    from statsmodels.stats.power import TTestIndPower

    assert n == max(3, math.ceil(TTestIndPower().solve_power(effect_size=0.5 / sd, alpha=0.05, power=0.8)))
    small = seed_plan([test], [_net("resnet", 20, [7.0, 7.01]), _net("resnet", 56, [7.0, 7.02])]).tests[0]
    assert small.planned == 3  # two seeds would do; the evidence rule asks for three


def test_the_cap_bounds_the_plan_and_says_what_the_cap_detects() -> None:
    groups = [_net("plain", 20, [8.0, 12.0, 16.0]), _net("resnet", 20, [7.0, 11.0, 15.0])]
    test = PlannedTest("plain vs resnet", (("resnet", 20), ("plain", 20)), effect=0.5, cap=6)
    sized = seed_plan([test], groups).tests[0]
    assert sized.planned == 6 and sized.beyond_cap
    assert _power(6, sized.detectable / sized.sd) == pytest.approx(0.8, abs=1e-3)
    assert "6 = cap" in "\n".join(seedplan.plan_lines(seed_plan([test], groups)))


def test_no_spread_measured_plans_the_minimum_and_the_cost_is_unknown() -> None:
    groups = [_net("resnet", 20, [7.0]), _net("plain", 20, [])]
    plan = seed_plan([PlannedTest("x", (("resnet", 20), ("plain", 20)))], groups)
    assert plan.tests[0].planned is None and plan.seeds == {("resnet", 20): 3, ("plain", 20): 3}
    assert math.isnan(plan.hours)
    assert "cost unknown" in seedplan.plan_lines(plan)[-1]


def test_cost_is_the_missing_seeds_times_the_measured_core_hours() -> None:
    groups = [
        _net("resnet", 20, [7.0, 7.2], wall_s=1800.0, threads=2),  # 1 core-hour a run
        _net("plain", 20, [8.0, 8.2, 8.1, 8.3], wall_s=3600.0),
    ]
    plan = seed_plan([PlannedTest("x", (("resnet", 20), ("plain", 20)))], groups)
    assert plan.seeds[("resnet", 20)] == 3 and plan.to_train(("resnet", 20)) == 1
    assert plan.to_train(("plain", 20)) == 0 and plan.hours == pytest.approx(1.0)
    assert "resnet-20 +1 (1.00 core-h each): 1.0 core-hours measured, within" in plan_text(plan)


def plan_text(plan: seedplan.SeedPlan) -> str:
    return "\n".join(seedplan.plan_lines(plan))


def test_a_difference_of_differences_is_sized_with_twice_the_variance() -> None:
    nets = [_net(v, d, [5.0, 5.3, 5.6]) for v in ("resnet", "highway") for d in (20, 56)]
    two = PlannedTest("pair", (("resnet", 20), ("resnet", 56)))
    four = PlannedTest("gain", (("resnet", 20), ("resnet", 56), ("highway", 20), ("highway", 56)))
    pair, gain = seed_plan([two, four], nets).tests
    assert gain.sd == pytest.approx(pair.sd * math.sqrt(2))


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_plans_a_test_for_each_of_its_claims(name: str) -> None:
    """Each experiment declares a test over networks it trains, at its standard depths."""
    exp = EXPERIMENTS[name]
    depths = exp.depths.get("standard", exp.default_depths)
    tests = exp.tests(depths)
    assert tests, name
    trained = {(r.variant, r.depth) for r in exp.runs(tuple(depths), (0,))}
    for t in tests:
        assert set(t.arms) <= trained, (name, t)
        assert t.effect > 0 and t.reason and t.cap >= 3


def test_plain_110_claims_use_the_failure_sized_effect() -> None:
    tests = EXPERIMENTS["degradation"].tests((20, 56, 110))
    by_claim = {t.claim: t for t in tests}
    assert by_claim["depth 110: ResNet trains better than plain"].effect == seedplan.FAILURE_EFFECT
    assert by_claim["plain nets: deeper trains worse"].effect == seedplan.FAILURE_EFFECT
    assert by_claim["ResNets: deeper tests no worse"].effect == seedplan.SMALLEST
    assert "depth 56: ResNet trains better than plain" not in by_claim  # judged at the deepest depth


def test_a_stated_plan_keeps_its_seeds_when_later_seeds_widen_the_spread() -> None:
    """The first sizing of a claim is recorded (new_statements) and later plans keep its seeds
    (stated_plans), showing the spread measured since; an unstated claim is sized now and recorded."""
    test = PlannedTest("deeper is better", (("resnet", 20), ("resnet", 56)), effect=0.5)
    other = PlannedTest("plain is worse", (("resnet", 20), ("plain", 20)), effect=0.5)
    pilot = [_net("resnet", 20, [7.0, 7.1, 7.2]), _net("resnet", 56, [7.0, 7.1, 7.2])]
    first = seed_plan([test], pilot)
    records = seedplan.new_statements(first, {})
    assert [(r["claim"], r["planned"]) for r in records] == [("deeper is better", first.tests[0].planned)]
    sessions = [{"started": "t0", "seed_plan": records}]
    wide = [
        _net("resnet", 20, [7.0, 8.5, 6.0, 7.2]),
        _net("resnet", 56, [7.0, 9.0, 6.1]),
        _net("plain", 20, [8.0, 8.4]),
    ]
    unfrozen = seed_plan([test], wide).tests[0]
    later = seed_plan([test, other], wide, seedplan.stated_plans(sessions))
    kept, new = later.tests
    assert unfrozen.planned > first.tests[0].planned == kept.planned == 3
    assert kept.sd == pytest.approx(unfrozen.sd) and kept.stated == records[0]["stated"][:10]
    assert ", stated " in "\n".join(seedplan.plan_lines(later)) and not new.stated
    assert [r["claim"] for r in seedplan.new_statements(later, seedplan.stated_plans(sessions))] == [
        "plain is worse"
    ]
