"""The report of bench/face_compare.py: the planned tests over seeds (reslab.analysis.stats: Welch, Holm),
results.csv, README.md and the figures (ROC curves, accuracy per seed, a grid of test pairs)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from reslab import figstyle
from reslab.analysis import stats
from reslab.experiments.evidence import MIN_SEEDS

LABELS = {
    "resnet20-arcface": "ResNet-20 ArcFace",
    "resnet20-cosface": "ResNet-20 CosFace",
    "resnet20-softmax": "ResNet-20 softmax",
    "plain20-arcface": "plain-20 ArcFace",
    "eigenfaces": "eigenfaces (PCA)",
    "iresnet18-softmax": "IR-ResNet-18 softmax",
    "iresnet18_plain-softmax": "plain IR-18 softmax",
}
FOLLOWUP_ARMS = ("iresnet18-softmax", "iresnet18_plain-softmax")
FIRST = ("resnet20-arcface", "resnet20-cosface", "resnet20-softmax", "plain20-arcface", "eigenfaces")
STYLE = {  # one colour per network (figstyle), the head by line style
    "resnet20-arcface": (figstyle.colour("resnet", 20), "-"),
    "resnet20-cosface": (figstyle.colour("resnet", 20), "--"),
    "resnet20-softmax": (figstyle.colour("resnet", 20), ":"),
    "plain20-arcface": (figstyle.colour("plain", 20), "-"),
    "eigenfaces": (figstyle.BLACK, "-."),
    "iresnet18-softmax": (figstyle.colour("resnet", 18), ":"),
    "iresnet18_plain-softmax": (figstyle.colour("plain", 18), ":"),
}
# (claim, arm a, arm b, expected sign of b - a: +1, or 0 = two-sided "they differ")
TESTS = [
    ("H1 ArcFace beats softmax (ResNet-20)", "resnet20-softmax", "resnet20-arcface", 1),
    ("H2 CosFace beats softmax (ResNet-20)", "resnet20-softmax", "resnet20-cosface", 1),
    ("H3 ArcFace and CosFace differ (ResNet-20)", "resnet20-cosface", "resnet20-arcface", 0),
    ("H4 ResNet-20 beats plain-20 (ArcFace)", "plain20-arcface", "resnet20-arcface", 1),
    ("H5 ResNet-20 ArcFace beats eigenfaces", "eigenfaces", "resnet20-arcface", 1),
]
# the follow-up's one claim (followup-plan.md), its own family
FOLLOWUP_TESTS = [
    ("H6 IR-ResNet-18 beats its plain twin (softmax)", "iresnet18_plain-softmax", "iresnet18-softmax", 1)
]


def load(out: Path) -> dict[str, list[dict]]:
    arms: dict[str, list[dict]] = {}
    for f in sorted((out / "runs").glob("*.json")):
        rec = json.loads(f.read_text())
        arms.setdefault(rec["arm"], []).append(rec)
    return arms


def acc(recs: list[dict]) -> list[float]:
    return [100 * r["test"]["accuracy"] for r in recs]


def run_tests(arms: dict[str, list[dict]], family: list[tuple] = TESTS) -> list[dict]:
    """A planned family: Welch over seeds (H5: one-sample t against the deterministic eigenfaces), Holm."""
    from scipy import stats as sps

    rows = []
    for claim, a, b, sign in family:
        va, vb = acc(arms.get(a, [])), acc(arms.get(b, []))
        if not va or not vb:
            rows.append({"claim": claim, "diff": math.nan, "p": math.nan, "n": (len(va), len(vb))})
            continue
        if a == "eigenfaces":
            p = float(sps.ttest_1samp(vb, va[0]).pvalue) if len(vb) >= 2 else math.nan
            test = f"one-sample t vs {va[0]:.2f}%"
        else:
            p = stats.welch(va, vb).p if len(va) >= 2 and len(vb) >= 2 else math.nan
            test = "Welch's t"
        rows.append({"claim": claim, "a": a, "b": b, "sign": sign, "diff": stats.mean(vb) - stats.mean(va),
                     "p": p, "test": test, "n": (len(va), len(vb))})  # fmt: skip
    for row, q in zip(rows, stats.holm([r["p"] for r in rows])):
        row["p_holm"] = q
        row["verdict"] = verdict(row)
    return rows


def verdict(row: dict) -> str:
    n_ok = min(row["n"][1], row["n"][0] if row.get("a") != "eigenfaces" else MIN_SEEDS) >= MIN_SEEDS
    if not (n_ok and math.isfinite(row["p_holm"])) or row["p_holm"] >= stats.ALPHA:
        return "INCONCLUSIVE"
    if row["sign"] == 0 or (row["diff"] > 0) == (row["sign"] > 0):
        return "SUPPORTED"
    return "NOT SUPPORTED (significant the other way)"


def summary_rows(arms: dict[str, list[dict]], names: Iterable[str] = LABELS) -> list[dict]:
    rows = []
    for arm in names:
        recs = arms.get(arm, [])
        if not recs:
            continue
        row = {"arm": arm, "seeds": len(recs)}
        for key in ("accuracy", "auc", "tar_far1", "top1"):
            v = [(100 if key != "auc" else 1) * r["test"][key] for r in recs]
            row[key] = stats.mean(v)
            row[key + "_sd"] = stats.std(v) if len(v) > 1 else math.nan
        row["train_seconds"] = stats.mean([r.get("train_seconds", r.get("fit_seconds", 0.0)) for r in recs])
        rows.append(row)
    return rows


def roc_figure(arms: dict[str, list[dict]], path: Path, names: Iterable[str] = FIRST) -> None:
    import matplotlib.pyplot as plt

    with figstyle.style():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for arm in [a for a in names if a in arms]:
            recs = arms[arm]
            c, ls = STYLE[arm]
            for k, r in enumerate(recs):
                ax.plot(r["test"]["roc"]["fpr"], r["test"]["roc"]["tpr"], color=c, ls=ls, lw=1.6,
                        drawstyle="steps-post", label=LABELS[arm] if k == 0 else None)  # fmt: skip
        ax.axvline(0.01, color="0.6", lw=0.8, ls=":")
        ax.set_xscale("symlog", linthresh=1e-2)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false accept rate (symlog; dotted line: FAR 1%)")
        ax.set_ylabel("true accept rate")
        ax.set_title("Olivetti, 10 unseen people, 900 test pairs: one curve per seed")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.tight_layout()
        figstyle.save(fig, path)


def accuracy_figure(arms: dict[str, list[dict]], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = [a for a in LABELS if a in arms]
    with figstyle.style():
        fig, ax = plt.subplots(figsize=(7.6, 3.6))
        for x, arm in enumerate(names):
            v = acc(arms[arm])
            c, _ = STYLE[arm]
            ax.scatter([x] * len(v), v, color=c, s=22, zorder=3)
            ax.plot([x - 0.25, x + 0.25], [stats.mean(v)] * 2, color=c, lw=2)
        ax.set_xticks(range(len(names)), [LABELS[a].replace(" ", "\n", 1) for a in names], fontsize=8)
        ax.set_ylim(50, 100)
        ax.set_ylabel("test verification accuracy (%)")
        ax.set_title(
            "test verification accuracy: dots = seeds, bar = mean (axis from chance, 50%)", fontsize=8
        )
        fig.tight_layout()
        figstyle.save(fig, path)


def write_report(out: Path) -> None:
    arms = load(out)
    rows, tests = summary_rows(arms, FIRST), run_tests(arms)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "tests.json").write_text(json.dumps(tests, indent=1, default=str))
    roc_figure(arms, out / "roc.png")
    accuracy_figure(arms, out / "accuracy.png")
    follow = run_tests(arms, FOLLOWUP_TESTS) if any(a in arms for a in FOLLOWUP_ARMS) else []
    if follow:
        (out / "followup-tests.json").write_text(json.dumps(follow, indent=1, default=str))
        record_look(out / "followup-looks.json", follow)
        roc_figure(arms, out / "followup-roc.png", FOLLOWUP_ARMS)
    (out / "README.md").write_text(markdown(rows, tests, arms) + followup_markdown(arms, follow, out))
    for r in rows + summary_rows(arms, FOLLOWUP_ARMS):
        print(f"{LABELS[r['arm']]:22s} n={r['seeds']}  acc {r['accuracy']:.2f} ± {r['accuracy_sd']:.2f}%  "
              f"AUC {r['auc']:.4f}  TAR@1% {r['tar_far1']:.1f}%  top-1 {r['top1']:.1f}%  {r['train_seconds']:.0f} s")  # fmt: skip
    for t in tests + follow:
        print(f"{t['claim']}: diff {t['diff']:+.2f} pts, p {t['p']:.4f}, Holm {t.get('p_holm', math.nan):.4f} "
              f"-> {t.get('verdict')}")  # fmt: skip


def pairs_figure(run: Path, path: Path, per_kind: int = 3) -> None:
    """Test pairs of one run at its validation threshold: right and wrong, same and different people."""
    import matplotlib.pyplot as plt

    from reslab.tasks.face import load_run
    from reslab.tasks.verification import pair_scores

    model, _, data, _ = load_run(str(run))
    t = data.metrics("val", model)["threshold"]
    from reslab.tasks.face import embed_images

    emb = embed_images(model, data.x["test"], data.mean, data.std)
    p = data.pairs["test"]
    s = pair_scores(emb, p)
    said = s >= t
    kinds = [("same person, accepted", p["same"] & said), ("different people, rejected", ~p["same"] & ~said),
             ("same person, REJECTED", p["same"] & ~said), ("different people, ACCEPTED", ~p["same"] & said)]  # fmt: skip
    rng = np.random.default_rng(0)
    with figstyle.style():
        fig, axes = plt.subplots(len(kinds), 2 * per_kind, figsize=(8.0, 5.6))
        for row, (name, mask) in enumerate(kinds):
            idx = np.flatnonzero(mask)
            pick = rng.choice(idx, size=min(per_kind, len(idx)), replace=False) if len(idx) else []
            for k in range(per_kind):
                for side in range(2):
                    ax = axes[row, 2 * k + side]
                    ax.axis("off")
                    if k < len(pick):
                        img = data.raw["test"][p["ij"[side]][pick[k]]]
                        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
                        if side == 0:
                            ax.set_title(f"cos {s[pick[k]]:+.2f}", fontsize=7, loc="left")
            axes[row, 0].text(-0.1, 0.5, f"{name}\n({mask.sum()} pairs)", transform=axes[row, 0].transAxes,
                              ha="right", va="center", fontsize=7)  # fmt: skip
        fig.suptitle(f"{run.name}: test pairs at the validation threshold cos {t:+.2f}", fontsize=8)
        fig.subplots_adjust(left=0.24, right=0.99, top=0.9, bottom=0.02, wspace=0.05, hspace=0.35)
        figstyle.save(fig, path)


PLAN = """## Plan (stated before the runs)

- Data: the face recipe's identity split (`split_seed` 0): 25 training people (250 photographs), 5
  validation people (model selection by validation ROC AUC), 10 test people never seen in training; the
  same 900 test pairs (450 positive, 450 negative, 10 folds) for every arm.
- Arms, seeds 0, 1, 2 each: ResNet-20 with ArcFace (s 64, m 0.5), CosFace (s 64, m 0.35), softmax;
  plain-20 with ArcFace; eigenfaces (PCA on the training people's 64 x 64 pixels, scikit-learn, the
  number of components (5 ... 150) chosen by validation AUC; deterministic: one value).
- Training: the `face` recipe's (SGD 0.1, cosine, 600 steps of 32, flips and 4-pixel crops), 32 x 32
  grey input, `checkpoints/best` by validation AUC.
- Primary metric: test verification accuracy, LFW protocol (threshold chosen on 9 folds, applied to the
  tenth; mean of the 10 folds). Tests, two-sided at alpha 0.05, Holm-adjusted over the five: H1 ArcFace vs
  softmax, H2 CosFace vs softmax, H3 ArcFace vs CosFace, H4 ResNet-20 vs plain-20 (ArcFace): Welch's t
  over seeds; H5 ResNet-20 ArcFace vs eigenfaces: one-sample t of the seeds against eigenfaces' value.
  SUPPORTED needs >= 3 seeds a side and a Holm-adjusted p < 0.05 in the stated direction; else
  INCONCLUSIVE (NOT SUPPORTED: significant the other way).
- IR-ResNet-18 vs its plain twin: not in this plan (see "Cost"); a follow-up with its own plan, below.
"""


COST = """## Cost

Machine: 2 vCPUs (Intel Xeon, AVX2 / AVX-512 / AMX-BF16), no GPU; torch 2.14.1, one torch thread,
`nice -n 5`, the machine shared with two to four other trainings throughout (load average up to ~24), so
seconds vary by 3x between seeds of one arm. Training and evaluation of the 12 network runs: {total:.0f} min
in all (the sweep's wall time 49 min); eigenfaces: 2 s. The recipe's network (ResNet-20 softmax) took
150-465 s per run.

The IR-ResNet-18 vs plain twin comparison was not in this plan: at the same 32 x 32 grey input
(`model_kwargs.input_size=32`) a training step of 32 faces measured 3.17 s for IR-ResNet-18 and 2.77 s
for its plain twin against 0.58 s for ResNet-20 (one thread, the same busy machine, one measurement), so
six runs looked like about 5 hours. On a quieter machine it ran afterwards as the follow-up below, with its
own plan and cost.
"""


def _pm(v: float, sd: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if not math.isfinite(sd) else f"{v:.{digits}f} ± {sd:.{digits}f}"


def results_table(rows: list[dict], arms: dict[str, list[dict]], names: Iterable[str]) -> list[str]:
    """The results table of ``rows`` (mean ± sd over seeds) and each seed's test accuracy of ``names``."""
    lines = ["| arm | seeds | verification accuracy (%) | ROC AUC | TAR at FAR 1% (%) | 1-shot top-1 (%) | "
             "training s / run |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {LABELS[r['arm']]} | {r['seeds']} | {_pm(r['accuracy'], r['accuracy_sd'])} | "
                     f"{_pm(r['auc'], r['auc_sd'], 4)} | {_pm(r['tar_far1'], r['tar_far1_sd'], 1)} | "
                     f"{_pm(r['top1'], r['top1_sd'], 1)} | {r['train_seconds']:.0f} |")  # fmt: skip
    return [*lines, "", "Per seed (test verification accuracy, %): " + "; ".join(
        f"{LABELS[a]} " + ", ".join(f"{v:.2f}" for v in acc(arms[a])) for a in names if a in arms)]  # fmt: skip


def markdown(rows: list[dict], tests: list[dict], arms: dict[str, list[dict]]) -> str:
    lines = ["# Faces: margin heads, residual vs plain, eigenfaces (Olivetti, unseen identities)", "",
             "Made by `bench/face_compare.py` (resumable: `runs/*.json`, one per finished run; "
             "`--report` redraws this page from them). Data: AT&T Laboratories Cambridge, \"The Database "
             "of Faces\" (Samaria and Harter 1994), 64 x 64 version.", "", PLAN,
             "## Results (test: 10 unseen people, 900 pairs; mean ± sd over seeds)", ""]  # fmt: skip
    lines += [*results_table(rows, arms, FIRST), "", "## Tests", "", "| claim | b - a (points) | test | p | p (Holm, 5) | verdict |", "|---|---:|---|---:|---:|---|"]  # fmt: skip
    for t in tests:
        lines.append(f"| {t['claim']} | {t['diff']:+.2f} | {t.get('test', '')} | {t['p']:.4f} | "
                     f"{t.get('p_holm', math.nan):.4f} | {t.get('verdict', '')} |")  # fmt: skip
    total = sum(r.get("train_seconds", 0.0) for a in FIRST for r in arms.get(a, []))
    lines += ["", COST.format(total=total / 60), "", "![ROC](roc.png)", "", "ROC curves of the test pairs, one per seed (line style: the head; "
              "colour: the network).", "", "![accuracy](accuracy.png)", "", "Test verification accuracy of every arm (the follow-up's too, below; the same 900 pairs): "
              "a dot per seed, the bar their mean; the axis starts at chance (50%).", "", "![pairs](pairs.png)", "",
              "Test pairs of the recipe's network (ResNet-20 softmax, seed 0) at its validation threshold: "
              "accepted and rejected pairs, right (rows 1-2) and wrong (rows 3-4), drawn at random.", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def record_look(path: Path, tests: list[dict]) -> None:
    """Append this look at the follow-up's data (seeds per arm, p, verdict) unless it repeats the last."""
    looks = json.loads(path.read_text()) if path.is_file() else []
    look = [{"claim": t["claim"], "n": list(t["n"]), "p": t["p"], "verdict": t.get("verdict")} for t in tests]
    if not looks or looks[-1]["tests"] != look:
        looks.append({"look": len(looks) + 1, "tests": look})
        path.write_text(json.dumps(looks, indent=1))


def followup_markdown(arms: dict[str, list[dict]], tests: list[dict], out: Path) -> str:
    """The follow-up's section: its plan, results, its one test and every look at its data."""
    if not tests:
        return ""
    rows = summary_rows(arms, FOLLOWUP_ARMS)
    looks = json.loads((out / "followup-looks.json").read_text())
    lines = ["## Follow-up: IR-ResNet-18 against its plain twin ([followup-plan.md](followup-plan.md))", "",
             "Planned after the comparison above and before its own runs: insightface's IR-ResNet-18 and the "
             "same layers without identity shortcuts, softmax head, 32 x 32 grey input (networks built for it), "
             "the same split, pairs and recipe; seeds 0-4; one claim, Welch's t, its own family.", ""]  # fmt: skip
    lines += [*results_table(rows, arms, FOLLOWUP_ARMS), "", "| claim | b - a (points) | test | p | verdict |", "|---|---:|---|---:|---|"]  # fmt: skip
    for t in tests:
        lines.append(
            f"| {t['claim']} | {t['diff']:+.2f} | {t.get('test', '')} | {t['p']:.4f} | {t['verdict']} |"
        )
    precisions = sorted({str(r.get("precision")) for a in FOLLOWUP_ARMS for r in arms.get(a, [])})
    lines += ["", "Looks at this data (followup-looks.json): " + "; ".join(
        f"look {k['look']}: " + ", ".join(f"n = {t['n'][0]} + {t['n'][1]}, p = {t['p']:.4f}, {t['verdict']}"
                                          for t in k["tests"]) for k in looks) + ".",
        "", f"Precision of the runs: {', '.join(precisions)} (`amp: auto`: bf16 where the CPU has it natively; "
        "H6 compares runs of one precision; the first comparison's records do not say theirs).",
        "", "Cost (training with its evaluations every 200 steps, mean over seeds): " + "; ".join(
            f"{LABELS[r['arm']]} {r['train_seconds']:.0f} s per run" for r in rows)
        + f"; {sum(r['train_seconds'] * r['seeds'] for r in rows) / 60:.0f} min in all, one thread each on the "
        "2-core Xeon of the first comparison (AVX-512, AMX-BF16), beside one other training the whole time and "
        "the test suite for part of it.",
        "", "![follow-up ROC](followup-roc.png)", "",
        "ROC curves of the follow-up's test pairs, one per seed (colour: the network).", ""]  # fmt: skip
    return "\n".join(lines) + "\n"
