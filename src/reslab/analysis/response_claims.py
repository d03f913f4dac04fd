"""The two readings of He et al. 2016's Fig. 7, decided by tests stated here before any network was measured
(issue 30), over the seeds of each network (:mod:`reslab.analysis.responses` measures them).

The unit is the seed: each trained network (one seed) gives one number, the median over its 3x3 layers of
the layer std (a median, so that a few very large layers cannot decide it). Claims:

1. **ResNet-d's responses are smaller than plain-d's**, one claim per depth d measured in both families:
   Welch's t-test (``scipy.stats.ttest_ind``, unequal variances) of the two networks' per-seed medians.
2. **Deeper ResNets have smaller responses**: ordinary least squares of the ResNet seeds' medians on
   log2(depth) (``statsmodels`` OLS; the depths 20/56/110 are about evenly spaced in log depth), the
   slope's t-test. Seeds of different depths are separate trainings, not paired, so no random effect.
3. **The fall with depth is residual-specific** (steeper in ResNets than in plain nets: the plain nets'
   medians fell with depth too in the earlier figure): OLS of every seed's median on log2(depth), family
   and their interaction; the interaction's t-test.

Every test is two-sided at :data:`~reslab.analysis.stats.ALPHA`; the report's claims are one family,
Holm-adjusted (:func:`reslab.analysis.stats.holm`); a claim is SUPPORTED when the adjusted p is below
ALPHA, the estimate points the paper's way and every network it rests on has :data:`MIN_SEEDS` seeds (the
project's rule, :data:`reslab.experiments.evidence.MIN_SEEDS`; the analyses sit below the experiments, so
the number is repeated here and a test keeps the two equal); NOT SUPPORTED when the adjusted p is below
ALPHA the other way, with the same seeds; INCONCLUSIVE otherwise. A claim whose networks are not measured
says so, with no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from reslab.analysis import stats

MIN_SEEDS = 3  # = reslab.experiments.evidence.MIN_SEEDS (module docstring)


@dataclass
class Network:
    """One network (``family`` "plain" or "resnet", ``depth``) and its seeds' per-layer stds."""

    family: str
    depth: int
    seeds: list[str]
    profiles: list[np.ndarray] = field(repr=False)

    @property
    def label(self) -> str:
        return f"{'ResNet' if self.family == 'resnet' else 'plain'}-{self.depth}"

    def medians(self) -> list[float]:
        """Each seed's median layer std: the tests' unit."""
        return [float(np.nanmedian(p)) for p in self.profiles]


@dataclass
class ResponseClaim:
    claim: str
    estimate: float = math.nan  # the tested quantity (negative: the paper's way)
    p: float = math.nan  # two-sided, nominal
    p_holm: float = math.nan
    networks: list[Network] = field(default_factory=list, repr=False)
    verdict: str = "inconclusive"
    sentence: str = ""


def _fit(x: np.ndarray, y: Sequence[float]) -> tuple[float, float]:
    """(coefficient, two-sided p) of the last column of ``x`` in an OLS fit of ``y`` (statsmodels)."""
    import statsmodels.api as sm

    res = sm.OLS(np.asarray(y, dtype=float), x).fit()
    return float(res.params[-1]), float(res.pvalues[-1])


def seed_count(n: int) -> str:
    """``"1 seed"``, ``"3 seeds"``: how the summary and the figure's legend count a network's seeds."""
    return f"{n} seed{'s' * (n != 1)}"


def _against_plain(res: Network, plain: Network) -> ResponseClaim:
    c = ResponseClaim(f"{res.label}'s responses are smaller than {plain.label}'s", networks=[res, plain])
    a, b = plain.medians(), res.medians()
    c.estimate = stats.mean(b) - stats.mean(a)
    if len(a) >= 2 and len(b) >= 2:
        c.p = stats.welch(a, b).p
    c.sentence = (
        f"median layer std {stats.mean(b):.3f} ({res.label}, mean of {seed_count(len(b))}) against "
        f"{stats.mean(a):.3f} ({plain.label}, {seed_count(len(a))}); Welch's t-test"
    )
    return c


def _slope(nets: Sequence[Network]) -> ResponseClaim:
    c = ResponseClaim(_SLOPE, networks=list(nets))
    x = [math.log2(n.depth) for n in nets for _ in n.medians()]
    y = [m for n in nets for m in n.medians()]
    if len(y) >= 3:
        c.estimate, c.p = _fit(np.column_stack([np.ones(len(x)), x]), y)
    listing = ", ".join(f"{n.label} {stats.mean(n.medians()):.3f}" for n in nets)
    c.sentence = f"means of the seeds' median layer std: {listing}; OLS slope per doubling of depth"
    return c


def _interaction(res: Sequence[Network], plain: Sequence[Network]) -> ResponseClaim:
    c = ResponseClaim(_STEEPER, networks=[*res, *plain])
    rows = [(math.log2(n.depth), float(n.family == "resnet"), m) for n in (*res, *plain) for m in n.medians()]
    c.sentence = "too few seeds for the OLS interaction"
    if len(rows) >= 5:
        d, r, y = (np.array(v) for v in zip(*rows))
        c.estimate, c.p = _fit(np.column_stack([np.ones(len(d)), d, r, d * r]), y)
        plain_slope = _fit(np.column_stack([np.ones(int((r == 0).sum())), d[r == 0]]), y[r == 0])[0]
        c.sentence = (
            f"plain nets' slope {plain_slope:+.4f} per doubling of depth, ResNets' {plain_slope + c.estimate:+.4f}; "
            "OLS interaction (ResNet slope minus plain slope)"
        )
    return c


_SLOPE = "Deeper ResNets have smaller responses"
_STEEPER = "The fall with depth is steeper in ResNets than in plain nets"


def _untested(claim: str, measured: str) -> ResponseClaim:
    return ResponseClaim(
        claim, sentence=f"not tested: {measured} measured, the test needs two or more depths"
    )


def judge_responses(nets: Sequence[Network]) -> list[ResponseClaim]:
    """The claims of the module docstring on ``nets``, tested, Holm-adjusted and given verdicts."""
    res = [n for n in nets if n.family == "resnet"]
    plain = {n.depth: n for n in nets if n.family == "plain"}
    claims = [_against_plain(r, plain[r.depth]) for r in res if r.depth in plain]
    claims.append(_slope(res) if len(res) >= 2 else _untested(_SLOPE, f"ResNets at {len(res)} depth(s)"))
    if len(res) >= 2 and len(plain) >= 2:
        claims.append(_interaction(res, list(plain.values())))
    else:
        claims.append(_untested(_STEEPER, f"ResNets at {len(res)}, plain nets at {len(plain)} depth(s)"))
    for c, q in zip(claims, stats.holm([c.p for c in claims])):
        c.p_holm = q
        c.verdict = _verdict(c)
    return claims


def _verdict(c: ResponseClaim) -> str:
    if not math.isfinite(c.p_holm) or c.p_holm >= stats.ALPHA:
        return "inconclusive"
    if any(len(n.seeds) < MIN_SEEDS for n in c.networks):
        return "inconclusive"
    return "supported" if c.estimate < 0 else "not supported"


def claims_markdown(claims: Sequence[ResponseClaim]) -> str:
    """The verdicts, one line each: the claim, the verdict, the numbers and the p-values."""
    if not claims:
        return "**What the numbers show.** No verdict: no depth measured in both families and fewer than two ResNet depths."
    family = sum(math.isfinite(c.p) for c in claims)
    lines = [
        f"**What the numbers show**: the verdicts (tests stated in `reslab.analysis.response_claims`; two-sided, Holm over the {family} "
        f"claims with a p-value; no SUPPORTED from fewer than {MIN_SEEDS} seeds per network):",
        "",
    ]
    for c in claims:
        if math.isfinite(c.p):
            p = f" (estimate {c.estimate:+.4f}, p = {c.p:.3f}, Holm-adjusted {c.p_holm:.3f})"
        elif c.networks:
            p = " (no test: fewer than two seeds per network)"
        else:
            p = ""
        short = [f"{n.label} ({len(n.seeds)})" for n in c.networks if len(n.seeds) < MIN_SEEDS]
        note = f" Fewer than {MIN_SEEDS} seeds: {', '.join(short)}." if short else ""
        lines.append(f"- **{c.claim}** — {c.verdict.upper()}: {c.sentence}{p}.{note}")
    return "\n".join(lines)
