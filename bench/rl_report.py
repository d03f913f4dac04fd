"""Issue 34's report: the runs ``bench/rl_encoders.py`` published under ``docs/results/rl/runs/`` judged by
the test ``docs/results/rl/plan.md`` stated before them, drawn and written down.

    python bench/rl_report.py        # -> docs/results/rl/{results.json, returns.png, verdicts.md}

The outcome of a run is its ``final_return`` (summary.json: the mean return of its last 100 training
episodes). Tests: Welch's t-test over seeds (``reslab.analysis.stats.welch``), two-sided, for residual vs
plain and residual vs the small CNN; Holm over the two (``stats.holm``); SUPPORTED only with at least
``MIN_SEEDS`` (3) finished seeds per arm (``reslab.experiments.evidence``), a Holm-adjusted p below 0.05
and the difference in the claim's direction; REFUTED when it is significant the other way.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from reslab.analysis import stats
from reslab.experiments import figstyle
from reslab.experiments.evidence import MIN_SEEDS, format_p

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "rl"
ARMS = {"impala_resnet": ("IMPALA ResNet (residual)", "resnet", "o"),
        "impala_plain": ("IMPALA plain twin", "plain", "s"),
        "minatar_cnn": ("MinAtar CNN (1 conv)", "minatar_cnn", "v")}  # fmt: skip
CLAIMS = (("impala_resnet", "impala_plain"), ("impala_resnet", "minatar_cnn"))
GRID = 2_500  # frames between the points of the learning curves


def load(root: Path) -> dict[str, list[dict]]:
    """The finished runs of each arm: summary and the curve (mean of the last 100 episodes on the grid)."""
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for d in sorted((root / "runs").glob("*-s*")):
        summary = json.loads((d / "summary.json").read_text())
        if not summary.get("finished") or summary["model"] not in ARMS:
            continue
        with open(d / "episodes.csv", newline="") as f:
            eps = [(int(r["frames"]), float(r["return"])) for r in csv.DictReader(f)]
        grid = list(range(GRID, summary["frames"] + 1, GRID))
        curve, i = [], 0
        for g in grid:
            while i < len(eps) and eps[i][0] <= g:
                i += 1
            last = [r for _, r in eps[max(0, i - 100) : i]]
            curve.append(sum(last) / len(last) if last else math.nan)
        runs[summary["model"]].append({"run": d.name, "seed": summary.get("seed", d.name[-1]), "summary": summary,
                                       "grid": grid, "curve": curve})  # fmt: skip
    return runs


def verdicts(runs: dict[str, list[dict]]) -> list[dict]:
    """Each planned claim with its Welch test, Holm-adjusted over the report's claims, and its verdict."""
    out = []
    for a, b in CLAIMS:
        va = [r["summary"]["final_return"] for r in runs[a]]
        vb = [r["summary"]["final_return"] for r in runs[b]]
        w = stats.welch(vb, va) if len(va) >= 2 and len(vb) >= 2 else None  # mean(a) - mean(b)
        out.append({"claim": f"{a} > {b} in final return", "a": a, "b": b, "n": [len(va), len(vb)],
                    "diff": stats.mean(va) - stats.mean(vb) if va and vb else math.nan,
                    "t": w.t if w else math.nan, "df": w.df if w else math.nan, "p": w.p if w else math.nan})  # fmt: skip
    for c, q in zip(out, stats.holm([c["p"] for c in out])):
        c["p_holm"] = q
        enough = min(c["n"]) >= MIN_SEEDS
        if enough and q < stats.ALPHA:
            c["verdict"] = "SUPPORTED" if c["diff"] > 0 else "REFUTED"
        else:
            c["verdict"] = "INCONCLUSIVE"
    return out


def figure(runs: dict[str, list[dict]], path: Path) -> None:
    """Learning curves (mean over seeds, min-max band) and each seed's final return."""
    import matplotlib.pyplot as plt

    with figstyle.style():
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [2.2, 1]})
        for k, (arm, (label, variant, mark)) in enumerate(ARMS.items()):
            rs, col = runs[arm], figstyle.colour(variant, 0)
            if not rs:
                continue
            n = min(len(r["curve"]) for r in rs)
            x = rs[0]["grid"][:n]
            ys = list(zip(*(r["curve"][:n] for r in rs)))
            ax.fill_between(x, [min(y) for y in ys], [max(y) for y in ys], color=col, alpha=0.2, lw=0)
            ax.plot(x, [sum(y) / len(y) for y in ys], color=col, lw=1.8, label=f"{label} ({len(rs)} seeds)")
            finals = [r["summary"]["final_return"] for r in rs]
            bx.plot([k] * len(finals), finals, mark, color=col, ms=6, alpha=0.8, ls="none")
            bx.plot([k - 0.25, k + 0.25], [sum(finals) / len(finals)] * 2, color=col, lw=2)
        ax.set(xlabel="frames (= agent steps on MinAtar)", ylabel="mean return of the last 100 episodes",
               ylim=(0, None), title="PPO on MinAtar Breakout: learning curves")  # fmt: skip
        ax.legend(loc="upper left", frameon=False)
        bx.set(xticks=range(len(ARMS)), xticklabels=["residual", "plain", "small CNN"], ylim=(0, None),
               ylabel="final return (last 100 episodes)", title="each seed (dot), mean (bar)")  # fmt: skip
        fig.tight_layout()
        figstyle.save(fig, path)


def main() -> None:
    runs = load(OUT)
    claims = verdicts(runs)
    figure(runs, OUT / "returns.png")
    rows = {arm: [{"run": r["run"], "final_return": r["summary"]["final_return"], "frames": r["summary"]["frames"],
                   "episodes": r["summary"]["episodes"], "wall_time_s": r["summary"]["wall_time_s"],
                   "params": r["summary"]["params"]} for r in rs] for arm, rs in runs.items()}  # fmt: skip
    (OUT / "results.json").write_text(json.dumps({"runs": rows, "claims": claims}, indent=1) + "\n")
    lines = []
    for c in claims:
        lines.append(f"- **{c['claim']}** — {c['verdict']} (seeds {c['n'][0]} vs {c['n'][1]}; difference "
                     f"{c['diff']:+.2f}; Welch t = {c['t']:.2f}, df = {c['df']:.1f}, {format_p(c['p'])}; "
                     f"Holm-adjusted {format_p(c['p_holm'])} over {len(claims)} claims)")  # fmt: skip
    for arm, rs in runs.items():
        v = [r["summary"]["final_return"] for r in rs]
        if v:
            sd = f" ± {stats.std(v):.2f}" if len(v) > 1 else ""
            lines.append(f"- {arm}: final return {stats.mean(v):.2f}{sd} (sd over {len(v)} seeds; "
                         f"{', '.join(f'{x:.2f}' for x in v)})")  # fmt: skip
    (OUT / "verdicts.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
