"""The report of bench/face_compare.py: the planned tests over seeds (reslab.analysis.stats: Welch, Holm),
results.csv, README.md and the figures (ROC curves, accuracy per seed, a grid of test pairs)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from reslab.analysis import stats
from reslab.experiments import figstyle
from reslab.experiments.evidence import MIN_SEEDS

LABELS = {
    "resnet20-arcface": "ResNet-20 ArcFace",
    "resnet20-cosface": "ResNet-20 CosFace",
    "resnet20-softmax": "ResNet-20 softmax",
    "plain20-arcface": "plain-20 ArcFace",
    "eigenfaces": "eigenfaces (PCA)",
}
STYLE = {  # one colour per network (figstyle), the head by line style
    "resnet20-arcface": (figstyle.colour("resnet", 20), "-"),
    "resnet20-cosface": (figstyle.colour("resnet", 20), "--"),
    "resnet20-softmax": (figstyle.colour("resnet", 20), ":"),
    "plain20-arcface": (figstyle.colour("plain", 20), "-"),
    "eigenfaces": (figstyle.BLACK, "-."),
}
# (claim, arm a, arm b, expected sign of b - a: +1, or 0 = two-sided "they differ")
TESTS = [
    ("H1 ArcFace beats softmax (ResNet-20)", "resnet20-softmax", "resnet20-arcface", 1),
    ("H2 CosFace beats softmax (ResNet-20)", "resnet20-softmax", "resnet20-cosface", 1),
    ("H3 ArcFace and CosFace differ (ResNet-20)", "resnet20-cosface", "resnet20-arcface", 0),
    ("H4 ResNet-20 beats plain-20 (ArcFace)", "plain20-arcface", "resnet20-arcface", 1),
    ("H5 ResNet-20 ArcFace beats eigenfaces", "eigenfaces", "resnet20-arcface", 1),
]


def load(out: Path) -> dict[str, list[dict]]:
    arms: dict[str, list[dict]] = {}
    for f in sorted((out / "runs").glob("*.json")):
        rec = json.loads(f.read_text())
        arms.setdefault(rec["arm"], []).append(rec)
    return arms


def acc(recs: list[dict]) -> list[float]:
    return [100 * r["test"]["accuracy"] for r in recs]


def run_tests(arms: dict[str, list[dict]]) -> list[dict]:
    """The planned family: Welch over seeds (H5: one-sample t against the deterministic eigenfaces), Holm."""
    from scipy import stats as sps

    rows = []
    for claim, a, b, sign in TESTS:
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


def summary_rows(arms: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for arm in LABELS:
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


def roc_figure(arms: dict[str, list[dict]], path: Path) -> None:
    import matplotlib.pyplot as plt

    with figstyle.style():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for arm, recs in arms.items():
            c, ls = STYLE[arm]
            for k, r in enumerate(recs):
                ax.plot(r["test"]["roc"]["fpr"], r["test"]["roc"]["tpr"], color=c, ls=ls, lw=1.3,
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
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        for x, arm in enumerate(names):
            v = acc(arms[arm])
            c, _ = STYLE[arm]
            ax.scatter([x] * len(v), v, color=c, s=22, zorder=3)
            ax.plot([x - 0.25, x + 0.25], [stats.mean(v)] * 2, color=c, lw=2)
        ax.set_xticks(range(len(names)), [figstyle.wrap(LABELS[a]) for a in names])
        ax.set_ylim(50, 100)
        ax.set_ylabel("test verification accuracy (%)")
        ax.set_title("dots: seeds (eigenfaces: deterministic, one value); bar: mean; axis from chance (50%)")
        fig.tight_layout()
        figstyle.save(fig, path)


def write_report(out: Path) -> None:
    arms = load(out)
    rows, tests = summary_rows(arms), run_tests(arms)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "tests.json").write_text(json.dumps(tests, indent=1, default=str))
    roc_figure(arms, out / "roc.png")
    accuracy_figure(arms, out / "accuracy.png")
    for r in rows:
        print(f"{LABELS[r['arm']]:22s} n={r['seeds']}  acc {r['accuracy']:.2f} ± {r['accuracy_sd']:.2f}%  "
              f"AUC {r['auc']:.4f}  TAR@1% {r['tar_far1']:.1f}%  top-1 {r['top1']:.1f}%  {r['train_seconds']:.0f} s")  # fmt: skip
    for t in tests:
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
        fig, axes = plt.subplots(len(kinds), 2 * per_kind, figsize=(2 * per_kind * 1.1, len(kinds) * 1.45))
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
        fig.tight_layout(rect=(0.18, 0, 1, 1))
        figstyle.save(fig, path)
