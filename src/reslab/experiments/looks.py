"""Every look at the data on record, and the verdicts held to the number of looks.

A sweep spans sittings and its report is read after each: a claim's p-value is looked at again every time
seeds are added, and stopping at the first look below 5% would make a false claim more likely than 5%.
Each invocation of ``reslab reproduce`` whose report has new data (runs it trained, or runs of its
networks that other experiments finished: the pool) records, in its ``experiment.json`` session entry,
what the report then said of each claim whose runs changed (``looks``: the claim, the seeds per network,
the nominal and Holm-adjusted p). A claim looked at ``K`` times (the recorded looks, plus the current data if
it is new) is decided only when its Holm-adjusted p is below Pocock's nominal level for ``K`` looks
(Pocock 1977: the same level at every look, keeping the overall two-sided level at 5%; constants from
Jennison & Turnbull 2000, Table 2.1, e.g. 0.0294 at two looks, 0.0221 at three; beyond ten looks,
Bonferroni's 0.05 / K). Looks taken before the record was kept (2026-12-06) are read back from the committed
reports into a ``recovered`` session entry (``bench/recover_looks.py``) and count the same.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reslab.analysis import stats
from reslab.experiments.evidence import Claim, format_p
from reslab.experiments.plan import read_sessions, rewrite_sessions

# Pocock's critical values of |Z| for K equally spaced looks at two-sided 5% (Jennison & Turnbull 2000,
# Table 2.1).
POCOCK_Z = {
    1: 1.960,
    2: 2.178,
    3: 2.289,
    4: 2.361,
    5: 2.413,
    6: 2.453,
    7: 2.485,
    8: 2.512,
    9: 2.535,
    10: 2.555,
}


def pocock_level(looks: int) -> float:
    """The nominal two-sided level each of ``looks`` looks is held to (Pocock; beyond 10: 0.05 / looks)."""
    from scipy.stats import norm

    looks = max(1, looks)
    if looks not in POCOCK_Z:
        return stats.ALPHA / looks
    return float(2 * norm.sf(POCOCK_Z[looks]))


def _seeds(c: Claim) -> list[int]:
    return [len(g.values("test_error")) for g in c.groups]


def record_look(out: str | Path, claims: list[Claim]) -> None:
    """Record this look in the newest session entry of experiment folder ``out``: each claim with a p-value
    whose data is new (its seeds per network not those of its latest recorded look), with its seeds,
    nominal and adjusted p. A claim whose runs did not change is not looked at again when the report is
    rewritten for another claim's new runs (its adjusted p may move with the family; its data did not). A
    session that already holds a look gets a session entry of its own after it."""
    from datetime import datetime, timezone

    out = Path(out)
    sessions = read_sessions(out)
    seen = history(sessions)
    now = [
        {"claim": c.claim, "seeds": _seeds(c), "p": round(c.p, 6), "p_holm": round(c.p_holm, 6)}
        for c in claims
        if math.isfinite(c.p) and (c.claim not in seen or seen[c.claim][-1]["seeds"] != _seeds(c))
    ]
    if not sessions or not now:
        return
    if sessions[-1].get("looks"):
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        sessions.append({"started": started, "command": "report rewritten: new runs of its networks in the pool",
                         "trained": [], "status": "finished", "looks": now})  # fmt: skip
    else:
        sessions[-1]["looks"] = now
    rewrite_sessions(out, sessions)


def history(sessions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each claim's recorded looks, oldest first, each with its date (``started``: the session's, or the
    look's own for a recovered one). A record repeating the claim's previous seeds is the same data, not a
    new look, and is left out (records written before :func:`record_look` kept only new data hold such
    repeats). A session's ``renamed`` (old claim text -> new) files the looks recorded under a claim's
    former text under its present one; a session with ``recovered`` holds looks taken before the record
    was kept, read back from the committed reports (each look names its ``git`` revision)."""
    renamed: dict[str, str] = {}
    for s in sessions:
        renamed.update(s.get("renamed") or {})
    dated = [
        {
            **look,
            "claim": renamed.get(look["claim"], look["claim"]),
            "started": look.get("started") or s.get("started", ""),
        }
        for s in sessions
        for look in s.get("looks") or []
    ]
    out: dict[str, list[dict[str, Any]]] = {}
    for look in sorted(dated, key=lambda look: str(look["started"])):  # stable: one session's in order
        past = out.setdefault(look["claim"], [])
        if not past or past[-1]["seeds"] != look.get("seeds"):
            past.append(look)
    return out


def _counts(past: list[dict[str, Any]], c: Claim) -> int:
    """How many looks the claim's current numbers make: the recorded ones, plus the current data if it
    is new (seeds not those of the last recorded look)."""
    return len(past) + (not past or past[-1]["seeds"] != _seeds(c))


def hold_to_looks(claims: list[Claim], sessions: list[dict[str, Any]]) -> None:
    """A decided verdict whose Holm-adjusted p is not below Pocock's level for the claim's number of
    looks becomes INCONCLUSIVE, and says so (module docstring)."""
    seen = history(sessions)
    for c in claims:
        if not math.isfinite(c.p):
            continue
        past = seen.get(c.claim, [])
        looks = _counts(past, c)
        level = pocock_level(looks)
        c.looks = looks
        if c.verdict != "inconclusive" and looks > 1 and not c.p_holm < level:
            c.sentence += (
                f" Looked at {looks} times: decided only below Pocock's level for {looks} looks, {level:.4f} "
                f"(adjusted {format_p(c.p_holm)})."
            )
            c.verdict = "inconclusive"
            c.undecided = (
                f"significant after Holm's correction (adjusted {format_p(c.p_holm)}), not below Pocock's level for its "
                f"{looks} looks ({level:.4f}): more seeds are a new look, held to a lower level still."
            )


def looks_section(claims: list[Claim], sessions: list[dict[str, Any]]) -> list[str]:
    """The report's "Looks at the data": each claim's recorded looks (date, seeds, nominal and adjusted p)
    and the level its verdict is held to."""
    seen = history(sessions)
    lines = ["## Looks at the data", ""]
    lines.append(
        "Each report with new data (runs trained, or runs of its networks other experiments finished) records "
        "what it said of each claim; a claim looked at "
        f"K times is decided only when its Holm-adjusted p is below Pocock's nominal level for K looks ({_levels(claims)}; "
        "[docs/evidence.md](../../evidence.md)). " + _earliest(seen)
    )
    lines.append("")
    for c in claims:
        if not math.isfinite(c.p):
            continue
        past = seen.get(c.claim, [])
        shown = [_shown(look) for look in past]
        if _counts(past, c) > len(past):
            shown.append(f"now ({' + '.join(map(str, _seeds(c)))} seeds, not yet recorded): {format_p(c.p)}, "
                         f"adjusted {format_p(c.p_holm)}")  # fmt: skip
        level = pocock_level(c.looks)
        lines.append(f"- {c.claim}: " + "; ".join(shown) + f" — held to {level:.4f}.")
    return [*lines, ""]


def _shown(look: dict[str, Any]) -> str:
    """One recorded look: "2026-12-06 (5 + 5 seeds): p = 0.084, adjusted p = 0.129"; a recovered one
    names its revision (and had no Holm adjustment where its report had none)."""
    where = f", git {look['git']}" if look.get("git") else ""
    adjusted = "not adjusted then" if look.get("p_holm") is None else f"adjusted {format_p(look['p_holm'])}"
    return f"{str(look['started'])[:10]} ({' + '.join(map(str, look['seeds']))} seeds{where}): {format_p(look['p'])}, {adjusted}"


def _levels(claims: list[Claim]) -> str:
    """Pocock's levels for 1 to the most looks a claim here has: "0.05, 0.0294, 0.0221 for 1-3 looks"."""
    most = max([c.looks for c in claims if math.isfinite(c.p)] or [1])
    levels = ", ".join(
        f"{pocock_level(k):.4g}" if k == 1 else f"{pocock_level(k):.4f}" for k in range(1, most + 1)
    )
    return f"{levels} for {'1 look' if most == 1 else f'1-{most} looks'}"


def _earliest(seen: dict[str, list[dict[str, Any]]]) -> str:
    """Which looks the record holds: from the date of the earliest (looks before it are not on record)."""
    dates = sorted(
        str(look["started"])[:10] for past in seen.values() for look in past if look.get("started")
    )
    if not dates:
        return "No look is on record yet."
    recovered = any(look.get("git") for past in seen.values() for look in past)
    return (
        f"The earliest look on record is of {dates[0]}; "
        + (
            "looks taken before the record was kept are read back from the committed reports (each names its git "
            "revision) and count. "
            if recovered
            else "looks at the data before the record was kept are not in it and not counted. "
        )
        + "A look can have fewer seeds than an earlier one: an invocation that saw only "
        "part of the pool (before reports pooled seeds across folders) judged fewer; every recorded look counts."
    )
