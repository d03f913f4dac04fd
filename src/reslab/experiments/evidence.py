"""The evidence rules every experiment's claims share (:mod:`reslab.experiments.claims` makes the claims):
a :class:`Claim` and its test's p-value, the comparison of two networks (:func:`compare`: Welch over
seeds, else binomial; :mod:`reslab.analysis.stats`), and :func:`judge`, which applies the rules to the
claims an experiment makes of its runs:

- no claim SUPPORTED from fewer than :data:`MIN_SEEDS` finished seeds per network;
- the claims of one report are one family: each p Holm-adjusted over the family, and a verdict the
  adjusted p does not carry is INCONCLUSIVE;
- networks short of :data:`MIN_SEEDS` seeds are not counted where the others decide the claims;
- a claim says which of its runs are unfinished or not started.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from reslab.analysis import stats
from reslab.analysis.stats import Comparison
from reslab.experiments.results import Group


def compare(a: Group, b: Group, attr: str) -> Comparison:
    """``b - a`` for ``attr`` with the stated test (Welch over seeds, else binomial; module docstring)."""
    return stats.compare(a.values(attr), b.values(attr), a.se(attr), b.se(attr), (a.label, b.label))


@dataclass
class Claim:
    claim: str  # the paper's claim, in one line
    verdict: str  # "supported", "not supported", "partly supported", "inconclusive"
    sentence: str  # the evidence, computed from the numbers
    undecided: str = ""  # when inconclusive: what the budget cannot decide, and what would
    groups: list[Group] = field(default_factory=list, repr=False)  # what it is judged from (empty: all)
    p: float = math.nan  # the nominal two-sided p of the test deciding the verdict (NaN: no p-value)
    p_holm: float = math.nan  # ``p`` Holm-adjusted over the report's claims
    family: int = 0  # the number of claims with a p-value in the report (Holm's family)
    looks: int = 1  # how many times its p has been looked at (reslab.experiments.looks)

    def markdown(self) -> str:
        return f"- **{self.claim}** — {self.verdict.upper()}{self.p_text()}: {self.sentence}"

    def p_text(self) -> str:
        """ " (p = 0.012; Holm-adjusted 0.048 over 5 claims)", or "" without a p-value."""
        if not math.isfinite(self.p):
            return ""
        if self.family == 1:  # a family of one: nothing to correct
            return f" ({format_p(self.p)}; the report's only claim with a p-value)"
        return f" ({format_p(self.p)}; Holm-adjusted {format_p(self.p_holm)} over {self.family} claims)"


def format_p(p: float) -> str:
    """A p-value as a report prints it: "p = 0.012", or "p < 0.001"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


MIN_SEEDS = 3  # no claim is SUPPORTED from fewer finished seeds per network (the project's evidence rule)


def judge(rules: Callable[[list[Group]], list[Claim]], groups: list[Group]) -> list[Claim]:
    """The claims ``rules`` (an experiment's, :attr:`reslab.experiments.specs.Experiment.claims`) make of
    ``groups``, under the evidence rules every experiment shares (module docstring): no claim SUPPORTED
    from fewer than :data:`MIN_SEEDS` seeds, and each claim says which of its runs are not finished."""
    if not groups or all(not math.isfinite(g.mean("test_error")) for g in groups):
        return [Claim("any claim", "inconclusive", "no finished evaluations to judge from yet.")]
    # Networks with fewer than MIN_SEEDS finished seeds (a depth added to a sweep, a seed still to come)
    # would decide nothing but hide what the others decide: the claims are judged from the networks
    # that have them, where that leaves something to judge, and say which are not counted yet.
    ready = [g for g in groups if len(g.values("test_error")) >= MIN_SEEDS]
    thin = [g for g in groups if g not in ready and g.values("test_error")]
    out = rules(ready) if ready and thin else []
    if out and all(c.verdict == "inconclusive" and c.claim == "any claim" for c in out):
        out = []
    if out:
        every = rules(groups)
        # a claim names the networks held back that it would have been judged from with them
        wanted = {c.claim: [g for g in thin if not c.groups or g in c.groups] for c in every}
        for c in out:
            counted = ", ".join(
                f"{g.label} ({len(g.values('test_error'))})" for g in wanted.get(c.claim, thin)
            )
            c.sentence += f" Not counted until they have {MIN_SEEDS} seeds: {counted}." if counted else ""
        judged = {c.claim for c in out}  # the claims only the thin networks can answer, listed after
        out += [c for c in every if c.claim not in judged]
    else:
        out = rules(groups)
    _holm(out)
    for c in out:
        _at_least_three_seeds(c, c.groups or groups)
        notes = _open_runs_note(c.groups or groups)
        if notes:
            c.sentence += f" ({notes})"
    return out


def _holm(claims: list[Claim]) -> None:
    """The report's claims as one family: each p Holm-adjusted over the claims that have one; a verdict
    whose adjusted p is not below :data:`~reslab.analysis.stats.ALPHA` becomes INCONCLUSIVE, and says so."""
    adjusted = stats.holm([c.p for c in claims])
    family = sum(math.isfinite(c.p) for c in claims)
    for c, q in zip(claims, adjusted):
        c.p_holm, c.family = q, family
        if c.verdict != "inconclusive" and math.isfinite(q) and q >= stats.ALPHA:
            c.sentence += (
                f" Significant alone ({format_p(c.p)}), not after Holm's correction over the report's {family} "
                f"claims (adjusted {format_p(q)})."
            )
            c.verdict = "inconclusive"
            c.undecided = (
                c.undecided
                or f"significant alone ({format_p(c.p)}), not after Holm's correction ({format_p(q)})."
            )


def _at_least_three_seeds(c: Claim, groups: list[Group]) -> None:
    """A claim the test supports is still INCONCLUSIVE while a network it is judged from has fewer than
    :data:`MIN_SEEDS` finished seeds: one or two seeds cannot show their own spread (Welch's test then has
    1-2 degrees of freedom and a tiny sample sd can decide it)."""
    if c.verdict not in ("supported", "partly supported"):
        return
    short = [
        f"{g.label} ({len(g.values('test_error'))})"
        for g in groups
        if len(g.values("test_error")) < MIN_SEEDS
    ]
    if not short:
        return
    c.sentence += (
        f" The test points the claim's way, but {', '.join(short)} {'has' if len(short) == 1 else 'have'} fewer "
        f"than {MIN_SEEDS} seeds: no verdict from fewer than {MIN_SEEDS} seeds per network."
    )
    c.verdict = "inconclusive"
    if not c.undecided:
        c.undecided = (
            f"the test points its way; {MIN_SEEDS} seeds per network ({', '.join(short)} now) decide it."
        )


def _open_runs_note(groups: list[Group]) -> str:
    """What of ``groups`` is not finished, for a claim judged from them ("" when all is)."""
    notes = []
    if any(g.in_progress() for g in groups):
        running = [r.name for g in groups for r in g.in_progress()]
        notes.append(
            f"{len(running)} run{'s' * (len(running) > 1)} still training ({', '.join(running)}): not counted yet"
        )
    waiting = [r.name for g in groups for r in g.not_started()]
    if waiting:
        notes.append(
            f"{len(waiting)} run{'s' * (len(waiting) > 1)} asked for (--seeds) not started yet ({', '.join(waiting)}): "
            "the numbers are of the others; the seed plan is in 'Planned seeds'"
        )
    return "; ".join(notes)
