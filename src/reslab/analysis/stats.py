"""Deciding whether two networks differ: Welch's t-test over seeds, and a binomial test for single runs.

Used by the experiments' verdicts (:mod:`reslab.experiments.claims`) and by the analyses' summaries
(e.g. the lesion study's shape-changing units); it lives here, below both, so that dependencies point
one way (experiments -> analysis).

The paper reports one run per network (CIFAR-10, Table 6: "best (mean±std)" over 5 runs only for
ResNet-110). On a short budget the seed-to-seed spread can be as large as the effect (issue 13 measured
0.57 points between two ResNet-20 seeds at 5 epochs, against a ResNet-56 - ResNet-20 gap of ~0.1), so a
difference is claimed only when a stated test supports it:

- two or more seeds per network: Welch's two-sample t-test (unequal variances; Welch 1947), two-sided,
  at the 5% level, computed by SciPy (``scipy.stats.ttest_ind(..., equal_var=False)``, the t
  distribution's tails ``scipy.stats.t``), the field's kept library: no hand-written distributions.
- the seeds a comparison needs: a two-sided two-sample t-test at ``ALPHA`` with 80% power
  (``statsmodels.stats.power.TTestIndPower``; equal spreads, the pooled seed-to-seed sd of the two
  networks: Student's t approximating Welch's), for a stated smallest effect (:func:`planned_seeds`);
- a family of claims (one report's): Holm's step-down correction (Holm 1979;
  ``statsmodels.stats.multitest.multipletests(method="holm")``), adjusted p beside the nominal one
  (:func:`holm`);
- a difference of differences (e.g. "ResNets gain more from depth than highway nets"): a linear
  contrast of four networks' means with Welch-Satterthwaite degrees of freedom (:func:`welch_contrast`);
- one run per network: the error rate's binomial standard error on the images it was measured on
  (``100 sqrt(p (1 - p) / n)`` points), the difference counting when it exceeds
  ``max(0.5 points, 2 standard errors)`` (about a 5% two-sided z-test, with a floor for tiny error rates).
  One seed says nothing about seed-to-seed spread: the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05  # two-sided significance level of every claimed difference
MIN_MARGIN = 0.5  # percentage points: the floor of the single-run (binomial) margin


# ---------------------------------------------------------------------------------- distributions


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability ``P(|T| >= |t|)`` of Student's t with ``df`` degrees of freedom (SciPy)."""
    from scipy import stats

    if math.isnan(t) or not df > 0:
        return math.nan
    return float(2.0 * stats.t.sf(abs(t), df))


def t_ppf2(p: float, df: float) -> float:
    """The ``t`` with ``P(|T| >= t) = p`` (two-sided critical value; SciPy)."""
    from scipy import stats

    return float(stats.t.isf(p / 2.0, df))


# ---------------------------------------------------------------------------------------- tests


def mean(v: Sequence[float]) -> float:
    return sum(v) / len(v) if v else math.nan


def std(v: Sequence[float]) -> float:
    """Sample standard deviation (``n - 1``); NaN for fewer than two values."""
    if len(v) < 2:
        return math.nan
    m = mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


@dataclass(frozen=True)
class Welch:
    t: float
    df: float
    p: float  # two-sided


def welch(a: Sequence[float], b: Sequence[float]) -> Welch:
    """Welch's t-test of ``mean(b) - mean(a)`` (``scipy.stats.ttest_ind(b, a, equal_var=False)``: t, the
    Welch-Satterthwaite degrees of freedom, two-sided p); needs two or more values on each side."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's t-test needs at least two values per group")
    d = mean(b) - mean(a)
    if std(a) == 0.0 and std(b) == 0.0:  # no spread at all: any difference is exact (SciPy says NaN)
        return Welch(math.copysign(math.inf, d) if d else 0.0, math.inf, 0.0 if d else 1.0)
    r = stats.ttest_ind(list(b), list(a), equal_var=False)
    return Welch(float(r.statistic), float(r.df), float(r.pvalue))


POWER = 0.8  # the power a planned number of seeds gives against the smallest effect of interest


def planned_seeds(
    effect: float, sd: float, alpha: float = ALPHA, power: float = POWER, limit: int = 1000
) -> int | None:
    """Seeds per network at which a two-sided two-sample t-test at ``alpha`` detects a true difference
    ``effect`` (points) with probability ``power``, when each network's seed-to-seed standard deviation
    is ``sd``: the smallest whole number with statsmodels' ``TTestIndPower.power`` at least ``power``
    (Cohen's d = effect / sd; its ``solve_power`` can fail to converge on small effects); at least 2; None
    when it exceeds ``limit`` or cannot be computed (no effect, no spread measured)."""
    from statsmodels.stats.power import TTestIndPower

    if not (math.isfinite(effect) and math.isfinite(sd)) or effect == 0 or sd < 0:
        return None
    if sd == 0:
        return 2
    d, analysis = abs(effect) / sd, TTestIndPower()

    def enough(n: int) -> bool:  # statsmodels' power at n seeds per network reaches the target
        p = analysis.power(effect_size=d, nobs1=n, alpha=alpha, ratio=1.0, alternative="two-sided")
        return bool(p >= power) or not math.isfinite(p)  # NaN: the noncentral t underflows where power ~ 1

    if not enough(limit):
        return None
    lo, hi = 1, limit  # the smallest n with enough power, by bisection over whole seeds (power rises with n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return max(2, hi)


def pooled_sd(a: Sequence[float], b: Sequence[float]) -> float:
    """The pooled seed-to-seed standard deviation of two networks (NaN below two seeds on a side)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return math.sqrt(((len(a) - 1) * std(a) ** 2 + (len(b) - 1) * std(b) ** 2) / (len(a) + len(b) - 2))


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm-Bonferroni adjusted p-values of a family of tests (statsmodels ``multipletests``); a NaN (a
    claim decided by no p-value) stays NaN and is not counted in the family."""
    from statsmodels.stats.multitest import multipletests

    finite = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    out = [math.nan] * len(pvalues)
    if finite:
        adjusted = multipletests([pvalues[i] for i in finite], alpha=alpha, method="holm")[1]
        for i, q in zip(finite, adjusted):
            out[i] = float(q)
    return out


def welch_contrast(groups: Sequence[Sequence[float]], weights: Sequence[float]) -> Welch:
    """Welch's test of the linear contrast ``sum(w * mean(g))`` = 0 (two-sided): standard error
    ``sqrt(sum(w² s² / n))`` and Welch-Satterthwaite degrees of freedom (Satterthwaite 1946); e.g. a
    difference of two differences with weights (+1, -1, -1, +1). Needs two or more values per group."""
    from scipy import stats

    if any(len(g) < 2 for g in groups):
        raise ValueError("a Welch contrast needs at least two values per group")
    est = sum(w * mean(g) for g, w in zip(groups, weights))
    parts = [w * w * std(g) ** 2 / len(g) for g, w in zip(groups, weights)]
    se2 = sum(parts)
    if se2 == 0:
        return Welch(math.copysign(math.inf, est) if est else 0.0, math.inf, 0.0 if est else 1.0)
    df = se2**2 / sum(v * v / (len(g) - 1) for v, g in zip(parts, groups))
    t = est / math.sqrt(se2)
    return Welch(t, df, float(2.0 * stats.t.sf(abs(t), df)))


@dataclass(frozen=True)
class Comparison:
    """The difference ``b - a`` of two networks' errors and the verdict of the stated test."""

    a: str  # labels
    b: str
    diff: float  # mean(b) - mean(a), points
    test: str  # "welch", "binomial" (fewer than two seeds on a side) or "missing" (a side not measured)
    p: float  # Welch: two-sided p; binomial: NaN
    margin: float  # binomial: the difference that counts; Welch: the smallest significant one
    n_a: int
    n_b: int
    ranges_overlap: bool | None  # seed ranges [min, max] overlap (None with fewer than 2 seeds each)
    seeds_needed: int | None = None  # Welch, not significant: seeds per network for 80% power at ``diff``

    @property
    def significant(self) -> bool:
        if not math.isfinite(self.diff):
            return False
        if self.test == "welch":
            return self.p < ALPHA
        return abs(self.diff) > self.margin

    @property
    def sign(self) -> int:
        """+1: b significantly higher, -1: significantly lower, 0: no difference shown."""
        return 0 if not self.significant else (1 if self.diff > 0 else -1)

    def describe(self) -> str:
        """The test and its numbers, for the report: "Welch's t, p = 0.012, n = 3 + 3"."""
        if self.test == "welch":
            p = f"p = {self.p:.3f}" if self.p >= 0.001 else "p < 0.001"
            text = f"Welch's t-test {p}, {self.n_a} + {self.n_b} seeds"
            if self.ranges_overlap is not None and min(self.n_a, self.n_b) >= 3:
                text += ", seed ranges " + ("overlap" if self.ranges_overlap else "do not overlap")
            return text
        if self.test == "missing":
            return "not measured yet: " + (self.a if not self.n_a else self.b) + " has no finished evaluation"
        side = "one run each" if self.n_a == self.n_b == 1 else "a single run on one side"
        return f"{side}: noise margin {self.margin:.2f} points (binomial / seed standard errors)"


def compare(
    a_vals: Sequence[float], b_vals: Sequence[float], a_se: float, b_se: float, labels=("a", "b")
) -> Comparison:
    """Compare two sets of per-seed errors (points). With two or more seeds on each side: Welch's t-test;
    else the binomial margin ``max(MIN_MARGIN, 2 sqrt(a_se² + b_se²))`` from the given standard errors."""
    a_vals, b_vals = [x for x in a_vals if math.isfinite(x)], [x for x in b_vals if math.isfinite(x)]
    if not a_vals or not b_vals:  # one side not measured (yet): no test, no claim
        return Comparison(
            labels[0], labels[1], math.nan, "missing", math.nan, math.nan, len(a_vals), len(b_vals), None
        )
    d = mean(b_vals) - mean(a_vals)
    if len(a_vals) >= 2 and len(b_vals) >= 2:
        w = welch(a_vals, b_vals)
        se = math.sqrt(std(a_vals) ** 2 / len(a_vals) + std(b_vals) ** 2 / len(b_vals))
        overlap = max(a_vals) >= min(b_vals) and max(b_vals) >= min(a_vals)
        need = None if w.p < ALPHA else planned_seeds(d, pooled_sd(a_vals, b_vals))
        return Comparison(
            labels[0],
            labels[1],
            d,
            "welch",
            w.p,
            t_ppf2(ALPHA, w.df) * se if math.isfinite(w.df) else 0.0,
            len(a_vals),
            len(b_vals),
            overlap,
            need,
        )
    se = math.sqrt((0.0 if math.isnan(a_se) else a_se) ** 2 + (0.0 if math.isnan(b_se) else b_se) ** 2)
    return Comparison(
        labels[0],
        labels[1],
        d,
        "binomial",
        math.nan,
        max(MIN_MARGIN, 2.0 * se),
        len(a_vals),
        len(b_vals),
        None,
    )


def binomial_se(error_pct: float, n: int) -> float:
    """Standard error (points) of an error rate measured on ``n`` images (floored at one image)."""
    p = min(max(error_pct / 100.0, 0.0), 1.0)
    n = max(int(n), 1)
    return 100.0 * math.sqrt(max(p * (1 - p), 1.0 / n) / n)
