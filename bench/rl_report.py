"""Issue 34's reports: the runs ``bench/rl_encoders.py`` published under ``docs/results/rl/runs/`` judged by
the tests stated before them, drawn and written down. Two studies, each its own Holm family:

- ``minatar`` (``plan.md``): MinAtar Breakout and SpaceInvaders, residual vs plain vs MinAtar's small CNN,
  30,000 frames -> ``results.json``, ``returns.png``, ``verdicts.md`` (and the follow-up's
  ``followup-verdict.md``, ``followup.png``);
- ``atari`` (``atari-plan.md``): ALE Breakout, residual vs plain vs the Nature CNN, 1,000,000 frames ->
  ``atari-results.json``, ``atari-returns.png``, ``atari-verdicts.md`` (written once its runs exist).

    python bench/rl_report.py

The outcome of a run is its ``final_return`` at its study's ``budget`` frames: the mean return of the last
100 training episodes that ended by then (from its ``episodes.csv``). Tests: Welch's t-test over seeds
(``reslab.analysis.stats.welch``), two-sided, for residual vs plain and residual vs the CNN; Holm over the
study's claims (``stats.holm``); SUPPORTED only with at least ``MIN_SEEDS`` (3) finished seeds per arm
(``reslab.experiments.evidence``), a Holm-adjusted p below 0.05 and the difference in the claim's
direction; REFUTED when it is significant the other way.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from reslab.analysis import stats
from reslab.experiments import figstyle
from reslab.experiments.evidence import MIN_SEEDS, format_p

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "rl"


@dataclass(frozen=True)
class Study:
    """One planned comparison: its games, arms (label, colour variant, marker, short name), claims, the
    frames at which runs are measured, the learning curves' grid, its name and the prefix of its files."""

    games: tuple[str, ...]
    arms: dict[str, tuple[str, str, str, str]]
    claims: tuple[tuple[str, str], ...]
    budget: int
    grid: int
    name: str
    prefix: str = ""
    legend: dict[str, str] = field(default_factory=dict)  # where each game's curves leave room (looked at)
    # the plan's runs: nothing is written or tested before all of them have finished (0: no wait)
    complete: int = 0


MINATAR = Study(
    games=("MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1"),
    arms={"impala_resnet": ("IMPALA ResNet (residual)", "resnet", "o", "residual"),
          "impala_plain": ("IMPALA plain twin", "plain", "s", "plain"),
          "minatar_cnn": ("MinAtar CNN (1 conv)", "minatar_cnn", "v", "small CNN")},
    claims=(("impala_resnet", "impala_plain"), ("impala_resnet", "minatar_cnn")),
    budget=30_000,  # plan.md, amendment
    grid=1_000,
    name="minatar",
    legend={"MinAtar/Breakout-v1": "upper left", "MinAtar/SpaceInvaders-v1": "lower right"},
)  # fmt: skip
ATARI = Study(
    games=("ALE/Breakout-v5",),
    arms={"impala_resnet": ("IMPALA ResNet (residual)", "resnet", "o", "residual"),
          "impala_plain": ("IMPALA plain twin", "plain", "s", "plain"),
          "nature_cnn": ("Nature CNN (3 conv)", "nature_cnn", "v", "Nature CNN")},
    claims=(("impala_resnet", "impala_plain"), ("impala_resnet", "nature_cnn")),
    budget=1_000_000,  # atari-plan.md
    grid=20_000,
    name="atari",
    prefix="atari-",
    legend={"ALE/Breakout-v5": "upper left"},  # returns rise with training: the early, high corner is empty
    complete=9,  # atari-plan.md: the test is computed once, when the nine runs have finished
)  # fmt: skip
STUDIES = (MINATAR, ATARI)


def load(
    root: Path, study: Study = MINATAR, seeds: tuple[int, ...] = (0, 1, 2)
) -> dict[str, dict[str, list[dict]]]:
    """The finished runs of ``seeds`` of each game and arm of ``study``: summary and the curve (mean of the
    last 100 episodes on the grid). MinAtar seeds 0-2: the first sweep; 3-7: the follow-up (followup-plan.md)."""
    runs: dict[str, dict[str, list[dict]]] = {env: {arm: [] for arm in study.arms} for env in study.games}
    for d in sorted((root / "runs").glob("*-s*")):
        if int(d.name.rsplit("-s", 1)[1]) not in seeds:
            continue
        summary = json.loads((d / "summary.json").read_text())
        if (
            not summary.get("finished")
            or summary["env"] not in study.games
            or summary["model"] not in study.arms
        ):
            continue
        if summary["frames"] < study.budget:
            continue
        with open(d / "episodes.csv", newline="") as f:
            eps = [(int(r["frames"]), float(r["return"])) for r in csv.DictReader(f)]
        grid = list(range(study.grid, study.budget + 1, study.grid))
        curve, i = [], 0
        for g in grid:
            while i < len(eps) and eps[i][0] <= g:
                i += 1
            last = [r for _, r in eps[max(0, i - 100) : i]]
            curve.append(sum(last) / len(last) if last else math.nan)
        summary["final_return"] = curve[-1]  # at the budget's frames
        runs[summary["env"]][summary["model"]].append(
            {"run": d.name, "summary": summary, "grid": grid, "curve": curve}
        )
    return runs


def verdicts(runs: dict[str, dict[str, list[dict]]], study: Study = MINATAR) -> list[dict]:
    """Each planned claim of each game with seeds, its Welch test, Holm-adjusted over the study's claims
    (plan.md: four with MinAtar's second game, else Breakout's two), and its verdict."""
    out = []
    for env, arms in runs.items():
        if env != study.games[0] and not any(arms.values()):
            continue  # a later game did not run: the family is the first game's claims
        for a, b in study.claims:
            va = [r["summary"]["final_return"] for r in arms[a]]
            vb = [r["summary"]["final_return"] for r in arms[b]]
            w = stats.welch(vb, va) if len(va) >= 2 and len(vb) >= 2 else None  # mean(a) - mean(b)
            out.append({"claim": f"{env}: {a} > {b} in return at {study.budget:,} frames", "env": env, "a": a,
                        "b": b, "n": [len(va), len(vb)], "diff": stats.mean(va) - stats.mean(vb) if va and vb else math.nan,
                        "t": w.t if w else math.nan, "df": w.df if w else math.nan, "p": w.p if w else math.nan})  # fmt: skip
    for c, q in zip(out, stats.holm([c["p"] for c in out])):
        c["p_holm"] = q
        va, vb = ([r["summary"]["final_return"] for r in runs[c["env"]][k]] for k in (c["a"], c["b"]))
        sd = stats.pooled_sd(va, vb) if min(len(va), len(vb)) > 1 else math.nan
        # seeds per arm at which this difference would be detected (power 0.8, alpha 0.05; not Holm's)
        c["seeds_to_decide"] = stats.planned_seeds(abs(c["diff"]), sd) if sd > 0 and c["diff"] else None
        if min(c["n"]) >= MIN_SEEDS and q < stats.ALPHA:
            c["verdict"] = "SUPPORTED" if c["diff"] > 0 else "REFUTED"
        else:
            c["verdict"] = "INCONCLUSIVE"
    return out


def _panels(ax, bx, runs: dict[str, list[dict]], study: Study, env: str) -> None:
    """One game: the learning curves (mean over seeds, min-max band) and each seed's final return."""
    for k, (arm, (label, variant, mark, _)) in enumerate(study.arms.items()):
        rs, col = runs[arm], figstyle.colour(variant, 0)
        if not rs:
            continue
        x = rs[0]["grid"]
        ys = list(zip(*(r["curve"] for r in rs)))
        ax.fill_between(x, [min(y) for y in ys], [max(y) for y in ys], color=col, alpha=0.2, lw=0)
        ax.plot(x, [sum(y) / len(y) for y in ys], color=col, lw=1.8, label=f"{label} ({len(rs)} seeds)")
        finals = [r["summary"]["final_return"] for r in rs]
        bx.plot([k] * len(finals), finals, mark, color=col, ms=6, alpha=0.8, ls="none")
        bx.plot([k - 0.25, k + 0.25], [sum(finals) / len(finals)] * 2, color=col, lw=2)
    top = max(r["summary"]["final_return"] for rs in runs.values() for r in rs)
    bx.set_ylim(0, 1.12 * top)  # the markers whole, from zero
    suite, game = env.split("/")[0].replace("ALE", "Atari"), env.split("/")[-1].split("-")[0]
    frames = "frames (= agent steps on MinAtar)" if suite == "MinAtar" else "frames (4 per agent step)"
    ax.set(xlabel=frames, ylabel="mean return, last 100 episodes", ylim=(0, None),
           title=f"PPO on {suite} {game}: mean over seeds, band = min-max")  # fmt: skip
    ax.legend(loc=study.legend.get(env, "best"), frameon=False)
    bx.set(xticks=range(len(study.arms)), xticklabels=[a[3] for a in study.arms.values()],
           ylabel=f"return at {study.budget:,} frames", title="each seed (marker), mean (bar)")  # fmt: skip


def figure(runs: dict[str, dict[str, list[dict]]], path: Path, study: Study = MINATAR) -> None:
    """Per game with runs: :func:`_panels`."""
    import matplotlib.pyplot as plt

    games = [env for env, arms in runs.items() if any(arms.values())]
    with figstyle.style():
        fig, axes = plt.subplots(len(games), 2, figsize=(9, 3.4 * len(games)), squeeze=False,
                                 gridspec_kw={"width_ratios": [2.2, 1]})  # fmt: skip
        for (ax, bx), env in zip(axes, games):
            _panels(ax, bx, runs[env], study, env)
        fig.tight_layout()
        figstyle.save(fig, path)


def _seeds(n: int | None) -> str:
    return f"~{n}" if n else "more than 1,000"


def followup(root: Path) -> list[str]:
    """followup-plan.md's one claim: residual > plain on Breakout, seeds 3-7 alone (Welch, no Holm)."""
    arms = load(root, seeds=(3, 4, 5, 6, 7))[MINATAR.games[0]]
    va, vb = ([r["summary"]["final_return"] for r in arms[k]] for k in MINATAR.claims[0])
    if min(len(va), len(vb)) < 2:
        return [f"- follow-up: {len(va)} + {len(vb)} runs finished; nothing to test yet"]
    w = stats.welch(vb, va)
    d = stats.mean(va) - stats.mean(vb)
    ok = min(len(va), len(vb)) >= MIN_SEEDS and w.p < stats.ALPHA
    verdict = ("SUPPORTED" if d > 0 else "REFUTED") if ok else "INCONCLUSIVE"
    return [
        f"- **MinAtar/Breakout-v1, seeds 3-7: impala_resnet > impala_plain in return at {MINATAR.budget:,} frames** — "
        f"{verdict} (seeds {len(va)} vs {len(vb)}; difference {d:+.2f}; Welch t = {w.t:.2f}, df = {w.df:.1f}, "
        f"{format_p(w.p)}; the follow-up's only claim)",
        f"- impala_resnet: {stats.mean(va):.2f} ± {stats.std(va):.2f} ({', '.join(f'{x:.2f}' for x in va)}); "
        f"impala_plain: {stats.mean(vb):.2f} ± {stats.std(vb):.2f} ({', '.join(f'{x:.2f}' for x in vb)})",
    ]


def _budget_words(frames: int) -> str:
    return f"{frames // 1_000_000}M" if frames % 1_000_000 == 0 else f"{frames // 1_000}k"


def verdict_lines(runs: dict[str, dict[str, list[dict]]], claims: list[dict], study: Study) -> list[str]:
    """The claims with their verdicts, then a table of every arm's outcome per game."""
    lines = []
    for c in claims:
        lines.append(f"- **{c['claim']}** — {c['verdict']} (seeds {c['n'][0]} vs {c['n'][1]}; difference "
                     f"{c['diff']:+.2f}; Welch t = {c['t']:.2f}, df = {c['df']:.1f}, {format_p(c['p'])}; "
                     f"Holm-adjusted {format_p(c['p_holm'])} over {len(claims)} claims; a difference this size at this "
                     f"spread needs {_seeds(c['seeds_to_decide'])} seeds per arm at power 0.8)")  # fmt: skip
    lines.append("")
    lines.append(f"| game | encoder | seeds | return at {_budget_words(study.budget)} frames (mean ± sd) | per seed "
                 "| steps/s (wall, loaded) |")  # fmt: skip
    lines.append("|---|---|---:|---|---|---:|")
    for env, arms in runs.items():
        for arm, rs in arms.items():
            v = [r["summary"]["final_return"] for r in rs]
            if v:
                sd = f" ± {stats.std(v):.2f}" if len(v) > 1 else ""
                fps = stats.mean([r["summary"]["steps_per_s"] for r in rs])
                lines.append(f"| {env.split('/')[-1]} | `{arm}` | {len(v)} | {stats.mean(v):.2f}{sd} | "
                             f"{', '.join(f'{x:.2f}' for x in v)} | {fps:.0f} |")  # fmt: skip
    return lines


def write_study(study: Study) -> list[str]:
    """``<prefix>results.json``, ``<prefix>returns.png`` and ``<prefix>verdicts.md`` of ``study``'s runs
    (nothing while it has none); returns the verdict lines."""
    runs = load(OUT, study)
    finished = sum(len(rs) for arms in runs.values() for rs in arms.values())
    if not finished or finished < study.complete:
        return [f"- {study.name} study: {finished} of its runs finished; nothing is tested or drawn "
                f"before {'all ' + str(study.complete) if study.complete else 'one'} have"]  # fmt: skip
    claims = verdicts(runs, study)
    figure(runs, OUT / f"{study.prefix}returns.png", study)
    keep = ("final_return", "frames", "episodes", "wall_time_s", "params", "steps_per_s")
    rows = {env: {arm: [{"run": r["run"], **{k: r["summary"][k] for k in keep}} for r in rs] for arm, rs in arms.items()}
            for env, arms in runs.items()}  # fmt: skip
    (OUT / f"{study.prefix}results.json").write_text(
        json.dumps({"budget_frames": study.budget, "runs": rows, "claims": claims}, indent=1) + "\n"
    )
    lines = verdict_lines(runs, claims, study)
    (OUT / f"{study.prefix}verdicts.md").write_text("\n".join(lines) + "\n")
    return lines


def main() -> None:
    (OUT / "followup-verdict.md").write_text("\n".join(followup(OUT)) + "\n")
    later = load(OUT, seeds=(3, 4, 5, 6, 7))[MINATAR.games[0]]
    if any(later.values()):
        figure({MINATAR.games[0]: later}, OUT / "followup.png")
    for study in STUDIES:
        print("\n".join(write_study(study)))


if __name__ == "__main__":
    main()
