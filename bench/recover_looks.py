"""Read back the looks at the data taken before the look record was kept (issue 30: "every look at the data
is recorded"), from the committed versions of each standard-budget report.

    python bench/recover_looks.py                 # writes the recovered looks into docs/results/*-standard
    python bench/recover_looks.py --print         # prints them instead
    python bench/recover_looks.py shortcuts depth # only these experiments

Before revision 0d7db45 (2026-12-06) an invocation of ``reslab reproduce`` recorded no looks, yet every
committed ``report.md`` showed its claims' p-values: each version is a look. For each experiment this reads
every committed version of ``docs/results/<name>-standard/report.md`` before that revision, takes each
claim's p-value and seeds per network from its verdict line, and keeps a look where the claim's numbers
changed from its previous version's. A look of the same data as one the record already holds (the same
p-value as the reports show it, and for "< 0.001" no more seeds of any network) is left out, as are claims
no report judges any more (a claim whose text changed is filed under its present text: :data:`RENAMED`). The looks go into one session entry of the
published ``experiment.json`` marked ``recovered`` (rewritten on every run of this script), each with its
date and git revision; :mod:`reslab.experiments.looks` counts them with the recorded ones. Those reports
had no Holm correction, so the looks carry no adjusted p.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from reslab import _io
from reslab.experiments.evidence import format_p  # a p-value as the reports show it

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("degradation", "depth", "highway", "relatives", "shortcuts")
RECORD_KEPT = "0d7db45"  # the first revision whose invocations record their looks
# a claim's former text -> its present one (the same comparison and test)
RENAMED = {
    "Deeper ResNets have lower test error (20 → 56; paper: 8.75% → 6.97%)": (
        "ResNet-56 has lower test error than ResNet-20 (20 → 56; paper: 8.75% → 6.97%)"
    ),
}
VERDICT = re.compile(
    r"^- \*\*(?P<claim>.+?)\*\* — [A-Z ]+\b.*?\bp (?P<p>= [0-9.]+|< 0\.001)[,;)].*?(?P<seeds>\d+(?: \+ \d+)+) seeds",
    re.M,
)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _p(text: str) -> float:
    """ "= 0.019" -> 0.019; "< 0.001" -> 0.0005 (below every level a claim is held to)."""
    return 0.0005 if text.startswith("<") else float(text.removeprefix("= "))


def _held(look: dict[str, Any], held: dict[tuple[str, str], list[list[int]]]) -> bool:
    """Whether the record holds ``look``'s data already: a recorded look of its claim with the p-value the
    report showed, and (for "< 0.001", which many looks share) at least its seeds of every network."""
    recorded = held.get((look["claim"], format_p(look["p"])), [])
    return any(look["p"] >= 0.001 or not Counter(look["seeds"]) - Counter(seeds) for seeds in recorded)


def committed_looks(name: str) -> list[dict[str, Any]]:
    """Every change of a claim's numbers across the committed reports of ``name`` before the record."""
    path = f"docs/results/{name}-standard/report.md"
    looks: list[dict[str, Any]] = []
    last: dict[str, tuple[str, str]] = {}
    for line in _git("log", "--reverse", "--format=%h %aI", f"{RECORD_KEPT}^", "--", path).splitlines():
        rev, date = line.split()
        for m in VERDICT.finditer(_git("show", f"{rev}:{path}")):
            claim = RENAMED.get(m["claim"], m["claim"])
            if last.get(claim) != (m["seeds"], m["p"]):
                last[claim] = (m["seeds"], m["p"])
                seeds = [int(n) for n in m["seeds"].split(" + ")]
                looks.append(
                    {
                        "claim": claim,
                        "seeds": seeds,
                        "p": _p(m["p"]),
                        "p_holm": None,
                        "started": date,
                        "git": rev,
                    }
                )
    return looks


def recover(name: str, write: bool) -> list[dict[str, Any]]:
    """The looks to add to ``name``'s published record (see the module docstring); written there with
    ``write``."""
    record = ROOT / "docs" / "results" / f"{name}-standard" / "experiment.json"
    data = json.loads(record.read_text(encoding="utf-8"))
    sessions = [s for s in data["sessions"] if not s.get("recovered")]
    current = set(
        re.findall(r"^- \*\*(.+?)\*\* — ", (record.parent / "report.md").read_text(encoding="utf-8"), re.M)
    )
    held: dict[tuple[str, str], list[list[int]]] = {}
    for s in sessions:
        for look in s.get("looks") or []:
            for claim in {look["claim"], RENAMED.get(look["claim"], look["claim"])}:
                held.setdefault((claim, format_p(look["p"])), []).append(look["seeds"])
    looks = [look for look in committed_looks(name) if look["claim"] in current and not _held(look, held)]
    renamed = {
        old: new
        for old, new in RENAMED.items()
        if any(look.get("claim") == old for s in sessions for look in s.get("looks") or [])
    }
    if write:
        entry = {
            "started": min((look["started"] for look in looks), default=""),
            "command": "looks recovered from the committed reports before the record was kept (bench/recover_looks.py)",
            "trained": [],
            "status": "finished",
            "recovered": True,
            "renamed": renamed,
            "looks": looks,
        }
        data["sessions"] = [entry, *sessions] if looks or renamed else sessions
        _io.write_json(record, data)
    return looks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(EXPERIMENTS))
    parser.add_argument("--print", action="store_true", help="print the looks instead of writing them")
    args = parser.parse_args()
    for name in args.names:
        for look in recover(name, write=not args.print):
            seeds = " + ".join(map(str, look["seeds"]))
            print(
                f"{name}: {look['started'][:16]} {look['git']} {look['claim']}: p = {look['p']} ({seeds} seeds)"
            )


if __name__ == "__main__":
    main()
