"""The paper's claims, each judged from the runs grouped over seeds (:mod:`reslab.experiments.results`).

Each claim is judged from the numbers by a stated test (:mod:`reslab.analysis.stats`): with two or
more seeds per network, Welch's t-test at 5% (two-sided); with one run per network, the binomial error of
an error rate measured on that many images (the evaluation set for test error, the last evaluation window
of training batches for training error), a difference counting beyond ``max(0.5 points, 2 standard
errors)``. The claims of one report are one family: each verdict's p-value is Holm-adjusted over the
family (:func:`reslab.analysis.stats.holm`), and a verdict the adjusted p does not carry is
"inconclusive". A claim the test cannot settle is "inconclusive", and the report lists it under what the
budget is too small to decide, with the seeds 80% power would need for the measured difference. No claim
is SUPPORTED from fewer than :data:`MIN_SEEDS` seeds per network: it stays inconclusive, and says so.
"""

from __future__ import annotations

import itertools
import math

from reslab.analysis import stats
from reslab.analysis.stats import Comparison
from reslab.experiments.evidence import Claim, compare, format_p
from reslab.experiments.paper import PAPER_TABLE6
from reslab.experiments.results import Group, fmt


def _by(groups: list[Group], variant: str) -> list[Group]:
    return sorted((g for g in groups if g.variant == variant), key=lambda g: g.depth)


def _trend(gs: list[Group], attr: str) -> tuple[int, int, int]:
    """(consecutive depths where the deeper is significantly higher, significantly lower, pairs)."""
    signs = [compare(a, b, attr).sign for a, b in itertools.pairwise(gs)]
    return signs.count(1), signs.count(-1), len(signs)


def _series(gs: list[Group], attr: str) -> str:
    return " → ".join(f"{_mean_sd(g, attr)}% ({g.label})" for g in gs)


def _mean_sd(g: Group, attr: str) -> str:
    return fmt(g.mean(attr), g.std(attr))


def _evidence(c: Comparison) -> str:
    if c.test == "missing":
        return c.describe()
    return f"{c.b} minus {c.a} = {c.diff:+.2f} points ({c.describe()})"


def _undecided(c: Comparison, what: str) -> str:
    """What an inconclusive comparison leaves open, and how many seeds would settle it ("" when it is
    only not measured yet: that is not a limit of the budget)."""
    if c.test == "missing":
        return ""
    text = f"{what}: {c.b} vs {c.a} differ by {c.diff:+.2f} points, within noise"
    if c.test == "welch":
        text += f" (a difference needs about ±{c.margin:.2f} points to reach 5% with these seeds"
        text += (
            f"; 80% power at 5% for the measured difference needs about {c.seeds_needed} seeds per network)"
            if c.seeds_needed
            else "; the measured one is too small to resolve with any practical number of seeds)"
        )
    else:
        text += " (fewer than two runs per network: rerun with --seeds 3 or more to measure the seed-to-seed spread)"
    return text + "."


def _deeper_is_worse(gs: list[Group], attr: str, what: str, family: str) -> Claim:
    claim = f"Among {family}, the deeper net has the higher {what}"
    if len(gs) < 2:
        return Claim(claim, "inconclusive", f"needs two depths; only {len(gs)} trained.", groups=gs)
    up, against, pairs = _trend(gs, attr)
    c = compare(gs[0], gs[-1], attr)
    verdict = {1: "supported" if against == 0 else "partly supported", -1: "not supported"}.get(
        c.sign, "inconclusive"
    )
    sentence = (
        f"{what} {_series(gs, attr)}; {_evidence(c)}; significantly higher at {up} of {pairs} steps in "
        f"depth, lower at {against}."
    )
    return Claim(claim, verdict, sentence, _undecided(c, what) if verdict == "inconclusive" else "", gs, c.p)


def _deeper_no_worse(gs: list[Group], attr: str, what: str, family: str) -> Claim:
    """He et al.: deeper ResNets are no worse, here: significantly better (supported), no difference
    shown (inconclusive: consistent with "no worse" but not evidence for it), worse (not supported)."""
    claim = f"Among {family}, deeper is no worse ({what})"
    if len(gs) < 2:
        return Claim(claim, "inconclusive", f"needs two depths; only {len(gs)} trained.", groups=gs)
    worse, better, pairs = _trend(gs, attr)
    c = compare(gs[0], gs[-1], attr)
    verdict = {-1: "supported" if worse == 0 else "partly supported", 1: "not supported"}.get(
        c.sign, "inconclusive"
    )
    sentence = (
        f"{what} {_series(gs, attr)}; {_evidence(c)}; a deeper net is significantly worse at {worse} of "
        f"{pairs} steps in depth, better at {better}"
        + (
            "; no difference shown, which is consistent with the claim but does not establish it"
            if not c.sign and c.test != "missing"
            else ""
        )
        + "."
    )
    return Claim(claim, verdict, sentence, _undecided(c, what) if verdict == "inconclusive" else "", gs, c.p)


def _a_beats_b(a: Group, b: Group, attr: str, what: str, claim: str) -> Claim:
    """The claim "a has the lower ``attr``": supported when b - a is significantly positive."""
    c = compare(a, b, attr)
    verdict = {1: "supported", -1: "not supported"}.get(c.sign, "inconclusive")
    sentence = f"{what}: {a.label} {_mean_sd(a, attr)}% vs {b.label} {_mean_sd(b, attr)}%; {_evidence(c)}."
    return Claim(
        claim, verdict, sentence, _undecided(c, what) if verdict == "inconclusive" else "", [a, b], c.p
    )


def degradation_claims(groups: list[Group]) -> list[Claim]:
    """He et al. 2016, Sec. 4.2 and Fig. 6: deeper plain nets have the higher training error, deeper
    ResNets do not, and at the deepest depth both families have, the ResNet trains better."""
    plain, res = _by(groups, "plain"), _by(groups, "resnet")
    out = [
        _deeper_is_worse(plain, "train_error", "training error", "plain nets"),
        _deeper_no_worse(res, "train_error", "training error", "ResNets"),
        _deeper_no_worse(res, "test_error", "test error", "ResNets"),
    ]
    common = sorted({g.depth for g in plain} & {g.depth for g in res})
    if common:
        d = common[-1]
        p = next(g for g in plain if g.depth == d)
        r = next(g for g in res if g.depth == d)
        out.append(
            _a_beats_b(
                r,
                p,
                "train_error",
                "training error",
                f"At depth {d}, the ResNet trains better than the plain net",
            )
        )
    return out


def depth_claims(groups: list[Group]) -> list[Claim]:
    """He et al. 2016, Table 6: test error falls from ResNet-20 to ResNet-110, and ResNet-1202 is no
    better than ResNet-110 (overfitting)."""
    res = [g for g in _by(groups, "resnet") if g.depth <= 110]
    lo, hi = (res[0].depth, res[-1].depth) if len(res) >= 2 else (20, 110)  # the depths compared
    paper = (
        f"; paper: {PAPER_TABLE6[lo]}% → {PAPER_TABLE6[hi]}%"
        if lo in PAPER_TABLE6 and hi in PAPER_TABLE6
        else ""
    )
    claim = f"Deeper ResNets have lower test error ({lo} → {hi}{paper})"
    if len(res) < 2:
        out = [Claim(claim, "inconclusive", f"needs two depths up to 110; {len(res)} trained.", groups=res)]
    else:
        worse, better, pairs = _trend(res, "test_error")
        c = compare(res[0], res[-1], "test_error")
        verdict = {-1: "supported" if worse == 0 else "partly supported", 1: "not supported"}.get(
            c.sign, "inconclusive"
        )
        sentence = (
            f"test error {_series(res, 'test_error')}; {_evidence(c)}; significantly lower at {better} of "
            f"{pairs} steps in depth, higher at {worse}."
        )
        out = [
            Claim(
                claim,
                verdict,
                sentence,
                _undecided(c, "test error") if verdict == "inconclusive" else "",
                res,
                c.p,
            )
        ]
    out += [_deeper_tests_better(res[0], g) for g in res[1:-1] if g.depth == 56]
    g1202 = [g for g in groups if g.depth == 1202]
    g110 = [g for g in groups if g.depth == 110]
    if g1202 and g110:
        c = compare(g110[0], g1202[0], "test_error")
        out.append(
            Claim(
                "ResNet-1202 is no better than ResNet-110 (overfitting; paper 7.93% vs 6.43%)",
                "not supported" if c.sign < 0 else "supported",
                f"test error {_mean_sd(g1202[0], 'test_error')}% vs {_mean_sd(g110[0], 'test_error')}%"
                f"; {_evidence(c)}.",
                groups=[g110[0], g1202[0]],
                p=c.p,
            )
        )
    return out


def _deeper_tests_better(lo: Group, hi: Group) -> Claim:
    """One step of Table 6 on its own: the plan's ``ResNet-lo → ResNet-56`` test
    (:func:`reslab.experiments.seedplan.depth_tests`), Welch's test of the two depths' test errors."""
    paper = (
        f"; paper: {PAPER_TABLE6[lo.depth]}% → {PAPER_TABLE6[hi.depth]}%" if lo.depth in PAPER_TABLE6 else ""
    )
    claim = f"ResNet-{hi.depth} has lower test error than ResNet-{lo.depth} ({lo.depth} → {hi.depth}{paper})"
    c = compare(lo, hi, "test_error")
    verdict = {-1: "supported", 1: "not supported"}.get(c.sign, "inconclusive")
    sentence = f"test error {_series([lo, hi], 'test_error')}; {_evidence(c)}."
    return Claim(
        claim,
        verdict,
        sentence,
        _undecided(c, "test error") if verdict == "inconclusive" else "",
        [lo, hi],
        c.p,
    )


def shortcut_claims(groups: list[Group]) -> list[Claim]:
    """He et al. 2016, Table 3: every shortcut option beats the plain net, and C ≤ B ≤ A."""
    by = {g.variant: g for g in groups}
    out: list[Claim] = []
    res = [by[k] for k in ("A", "B", "C") if k in by]
    if "plain" in by and res:
        worst = max(res, key=lambda g: g.mean("test_error"))
        every = _a_beats_b(
            worst,
            by["plain"],
            "test_error",
            "test error, worst shortcut option vs plain",
            "Every shortcut option (A, B, C) is far better than the plain net",
        )
        every.groups = [*res, by["plain"]]  # which option is the worst depends on all of them
        out.append(every)
    if len(res) >= 2:
        claim = "C ≤ B ≤ A (projections help a little; paper: 24.19 ≤ 24.52 ≤ 25.03 on ImageNet)"
        cs = [compare(by[x], by[y], "test_error") for x, y in (("C", "B"), ("B", "A")) if x in by and y in by]
        ok, rev = sum(c.sign > 0 for c in cs), sum(c.sign < 0 for c in cs)
        ordered = all(c.diff >= 0 for c in cs)
        verdict = "not supported" if rev else "supported" if ok == len(cs) else "inconclusive"
        sentence = (
            "test error "
            + ", ".join(f"{g.variant} {_mean_sd(g, 'test_error')}%" for g in res)
            + "; "
            + "; ".join(_evidence(c) for c in cs)
            + (
                "; the means are in the paper's order but the gaps are within noise"
                if verdict == "inconclusive" and ordered
                else "; the gaps are within noise and not in the paper's order"
                if verdict == "inconclusive"
                else ""
            )
            + "."
        )
        undecided = " ".join(_undecided(c, "test error") for c in cs if not c.sign)
        # both steps must hold: an intersection-union test, whose p is the larger of the two; one step
        # significantly reversed is enough to contradict the order, so that step's p is the claim's then
        p = min(c.p for c in cs if c.sign < 0) if rev else max((c.p for c in cs), default=math.nan)
        out.append(Claim(claim, verdict, sentence, undecided if verdict == "inconclusive" else "", res, p))
    return out


def highway_claims(groups: list[Group]) -> list[Claim]:
    """He et al. 2016, Sec. 4.2 (highway networks, Srivastava et al. 2015): at each depth the ResNet beats
    the highway and the plain net, deeper ResNets train no worse, and they gain more from depth than
    highway nets (:func:`depth_gain_claim`)."""
    out: list[Claim] = []
    depths = sorted({g.depth for g in groups})
    by = {(g.variant, g.depth): g for g in groups}
    for d in depths:
        r, h, p = by.get(("resnet", d)), by.get(("highway", d)), by.get(("plain", d))
        if r and h:
            out.append(
                _a_beats_b(
                    r,
                    h,
                    "test_error",
                    "test error",
                    f"At depth {d}, the ResNet is better than the highway net",
                )
            )
        if r and p:
            out.append(
                _a_beats_b(
                    r, p, "test_error", "test error", f"At depth {d}, the ResNet is better than the plain net"
                )
            )
    res, hw = _by(groups, "resnet"), _by(groups, "highway")
    if len(depths) >= 2 and len(res) >= 2:
        out.append(_deeper_no_worse(res, "train_error", "training error", "ResNets"))
    if len(depths) >= 2 and len(res) >= 2 and len(hw) >= 2:
        out.append(depth_gain_claim(res, hw))
    return out


def depth_gain_claim(res: list[Group], hw: list[Group]) -> Claim:
    """ "ResNets gain more from depth than highway nets": the difference of two differences of training
    error, ``(ResNet_deep - ResNet_shallow) - (highway_deep - highway_shallow)``, by Welch's test of that
    contrast (Welch-Satterthwaite df; :func:`reslab.analysis.stats.welch_contrast`) with two or more seeds
    per network, else a z-test on the four groups' binomial standard errors with the 0.5-point floor."""
    claim = f"ResNets gain more from depth than highway nets (depth {hw[0].depth} → {hw[-1].depth})"
    ends = [res[0], res[-1], hw[0], hw[-1]]
    missing = [g.label for g in ends if not g.values("train_error")]
    if missing:
        return Claim(
            claim,
            "inconclusive",
            f"not measured yet: {', '.join(missing)} has no finished evaluation.",
            groups=ends,
        )
    dr = res[-1].mean("train_error") - res[0].mean("train_error")
    dh = hw[-1].mean("train_error") - hw[0].mean("train_error")
    gap = dh - dr
    values = [g.values("train_error") for g in ends]
    if all(len(v) >= 2 for v in values):
        w = stats.welch_contrast(values, (1, -1, -1, 1))  # (dh - dr), as ``gap``
        verdict = "inconclusive" if not w.p < stats.ALPHA else "supported" if gap > 0 else "not supported"
        how = f"Welch's test of the contrast, {format_p(w.p)}, df = {w.df:.1f}"
        within = f"within noise ({format_p(w.p)})"
        p = w.p
    else:
        se = math.sqrt(sum(_nz(g.se("train_error")) ** 2 for g in ends))
        m = max(stats.MIN_MARGIN, 1.96 * se)
        verdict = "supported" if gap > m else "not supported" if gap < -m else "inconclusive"
        how = f"it counts beyond {m:.2f} points: 1.96 binomial standard errors, z-test at 5%"
        within, p = f"within ±{m:.2f}", math.nan
    return Claim(
        claim,
        verdict,
        f"training error changes by {dr:+.2f} points for ResNets and {dh:+.2f} for highway nets "
        f"(difference {gap:+.2f}; {how}).",
        f"training error gain from depth, ResNet vs highway: {gap:+.2f} points, {within}."
        if verdict == "inconclusive"
        else "",
        ends,
        p,
    )


def _nz(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def relatives_claims(groups: list[Group]) -> list[Claim]:
    """Each relative against the ResNet of its depth (DenseNet-BC-100 against ResNet-56, similar size):
    the papers report SE (Hu et al. 2018, Table 4), pre-activation (He et al. 2016b, Table 2) and
    DenseNet-BC (Huang et al. 2017, Table 2: 4.51% vs 6.97%) as better on CIFAR."""
    out: list[Claim] = []
    res = {g.depth: g for g in groups if g.variant == "resnet"}
    names = {"seresnet": "the SE-ResNet", "preact": "the pre-activation ResNet"}
    for g in sorted(groups, key=lambda g: (g.depth, g.variant)):
        if g.variant in names and g.depth in res:
            claim = f"At depth {g.depth}, {names[g.variant]} is better than the ResNet"
            out.append(_a_beats_b(g, res[g.depth], "test_error", "test error", claim))
        elif g.variant == "densenet" and 56 in res:
            claim = "DenseNet-BC-100 (0.8M parameters) is better than ResNet-56 (0.85M)"
            out.append(_a_beats_b(g, res[56], "test_error", "test error", claim))
    return out
