"""The measured cost of every published standard-budget run, for BENCHMARKS.md (issue 30: "record the
measured cost of each new run").

    python bench/run_costs.py            # rewrites BENCHMARKS.md's block between <!-- run-costs --> marks
    python bench/run_costs.py --print    # prints the table instead

Each finished run under ``docs/results/*-standard/runs/`` is listed once per network (a run copied into
several experiments' folders has one wall time: it is listed once), with its seeds' wall times as their
``summary.json`` records them (``wall_time_s``: the run's own training, resumed sittings added up) and the
threads it ran on; core-hours are wall time x threads. The machines were shared (two runs side by side,
often beside other work), so a time says what the run took there, not what the network costs alone: the
ratios between networks are in "What each experiment's networks cost to train".
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"
BLOCK = re.compile(r"(<!-- run-costs -->\n).*?(<!-- /run-costs -->)", re.S)


def finished_runs(
    results: Path = RESULTS,
) -> tuple[dict[str, dict[int, tuple[float, int, str]]], dict[str, set[str]]]:
    """network (the run's name without its seed: ``resnet32B``) -> seed -> (wall seconds, threads, precision)
    of every finished standard-budget run, each run once; and the other names a network's runs are
    published under (shortcuts' ``resnet32A`` is depth's ``resnet32``, copied: the same model, seed and
    wall time)."""
    runs: dict[str, dict[int, tuple[float, int, str]]] = defaultdict(dict)
    aliases: dict[str, set[str]] = defaultdict(set)
    seen: dict[tuple[str, int, float], str] = {}
    for path in sorted(results.glob("*-standard/runs/*/summary.json")):
        s = json.loads(path.read_text(encoding="utf-8"))
        if not s.get("finished") or "wall_time_s" not in s:
            continue
        network, seed = path.parent.name.rsplit("-s", 1)
        key = (s["model"], int(seed), float(s["wall_time_s"]))
        if seen.setdefault(key, network) != network:
            aliases[seen[key]].add(network)
            continue
        runs[network][int(seed)] = (key[2], int(s.get("threads") or 1), s.get("precision", "?"))
    return runs, aliases


def table(results: Path = RESULTS) -> str:
    rows = [
        "| network | seeds | precision | wall time per seed (s, seed order) | core-hours |",
        "|---|---:|---|---|---:|",
    ]
    total = 0.0
    runs, aliases = finished_runs(results)
    for network, seeds in sorted(runs.items()):
        order = sorted(seeds)
        hours = sum(seeds[k][0] * seeds[k][1] for k in order) / 3600
        total += hours
        times = ", ".join(f"s{k} {seeds[k][0]:,.0f}" for k in order)
        precision = "/".join(sorted({seeds[k][2] for k in order}))
        also = f" (= {', '.join(sorted(aliases[network]))})" if aliases.get(network) else ""
        rows.append(f"| {network}{also} | {len(order)} | {precision} | {times} | {hours:.1f} |")
    rows.append(f"| all | | | | {total:.1f} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print", action="store_true", help="print the table, leave BENCHMARKS.md as it is")
    a = ap.parse_args()
    if a.print:
        print(table(), end="")
        return
    text = BENCHMARKS.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        raise SystemExit("BENCHMARKS.md has no <!-- run-costs --> block")
    BENCHMARKS.write_text(BLOCK.sub(lambda m: m.group(1) + table() + m.group(2), text), encoding="utf-8")


if __name__ == "__main__":
    main()
