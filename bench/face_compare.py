"""Issue 33's face comparisons on the Olivetti faces, resumable: one JSON per finished run.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 5 python bench/face_compare.py --data ../shared/fixtures/olivetti-faces
    python bench/face_compare.py --report      # only redraw the report from the stored results
    ... python bench/face_compare.py --followup # IR-ResNet-18 vs its plain twin (followup-plan.md)

Plan (stated before the runs; docs/results/faces/README.md repeats it with the outcome):
- Data: the face recipe's identity split (split_seed 0): 25 training, 5 validation, 10 unseen test
  people; the same 900 test pairs (450 + 450, 10 folds) for every arm. Input 32 x 32 grey (the 64 x 64
  photographs resized: the budget), ResNet-20 / plain-20 (He et al.'s CIFAR networks, 64-d embedding).
- Arms, 3 seeds each (0, 1, 2): ResNet-20 with ArcFace, CosFace, softmax; plain-20 with ArcFace;
  eigenfaces (PCA on the training people's 64 x 64 pixels, scikit-learn; components chosen by
  validation AUC; deterministic: one value, no seeds).
- Primary metric: test verification accuracy (LFW protocol, percent). Tests (two-sided, alpha 0.05,
  Holm over the five): H1 ArcFace vs softmax, H2 CosFace vs softmax, H3 ArcFace vs CosFace, H4
  ResNet-20 vs plain-20 (both ArcFace): Welch's t over seeds; H5 ResNet-20 ArcFace vs eigenfaces:
  one-sample t of the seeds against the eigenfaces value. A claim is SUPPORTED only with >= 3 seeds a
  side and Holm-adjusted p < 0.05 in its direction; otherwise INCONCLUSIVE (or NOT SUPPORTED when
  significant the other way).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "faces"
SEEDS = (0, 1, 2)
ARMS = {  # name -> (model, head)
    "resnet20-arcface": ("resnet20", "arcface"),
    "resnet20-cosface": ("resnet20", "cosface"),
    "resnet20-softmax": ("resnet20", "softmax"),
    "plain20-arcface": ("plain20", "arcface"),
}
SIZE, ITERATIONS = 32, 600
# the follow-up (docs/results/faces/followup-plan.md, stated before its runs): name -> (model, head, model_kwargs)
FOLLOWUP = {
    "iresnet18-softmax": ("iresnet18", "softmax", {"input_size": SIZE}),
    "iresnet18_plain-softmax": ("iresnet18_plain", "softmax", {"input_size": SIZE}),
}
FOLLOWUP_SEEDS = (0, 1, 2, 3, 4)


def arm_spec(arm: str) -> tuple[str, str, dict]:
    """(model, head, model_kwargs) of an arm of either sweep."""
    return FOLLOWUP[arm] if arm in FOLLOWUP else (*ARMS[arm], {})


def run_config(arm: str, seed: int, data: str):
    from reslab.train import load_recipe

    model, head, model_kwargs = arm_spec(arm)
    return load_recipe(
        "face", model=model, model_kwargs=model_kwargs, seed=seed, data_dir=data, iterations=ITERATIONS, eval_every=200,
        checkpoint_every=200, log_every=100, tensorboard=False, threads=1,
        task_kwargs={"head": head, "image_size": SIZE, "in_chans": 1, "val_identities": 5, "test_identities": 10},
    )  # fmt: skip


def train_one(arm: str, seed: int, data: str, work: Path) -> dict:
    """Train (or resume) one run, evaluate it, return its record (also written to runs/<arm>-s<seed>.json)."""
    from reslab.tasks.base import EvalRequest
    from reslab.tasks.face_eval import evaluate_face_run
    from reslab.train import train

    run = work / f"{arm}-s{seed}"
    t0 = time.time()
    resume = (run / "checkpoints" / "last.safetensors").is_file() and not (run / "summary.json").is_file()
    summary = train(run_config(arm, seed, data), run, resume=resume, overwrite=not resume, progress=False)
    seconds = time.time() - t0
    ev = evaluate_face_run(str(run), EvalRequest(device="cpu"))
    keep = ("accuracy", "accuracy_sd", "auc", "tar_far1", "top1", "threshold", "roc")
    model, head, _ = arm_spec(arm)
    rec = {
        "arm": arm, "seed": seed, "model": model, "head": head, "train_seconds": seconds,
        "steps": summary.get("steps"), "best_step": ev["step"], "precision": summary.get("precision"),
        "val": {k: ev["val"][k] for k in keep}, "test": {k: ev["test"][k] for k in keep},
    }  # fmt: skip
    return rec


def eigenfaces(data: str) -> dict:
    """PCA on the training people's pixels; the number of components with the best validation AUC."""
    from sklearn.decomposition import PCA

    from reslab.tasks.face import FaceData, face_options
    from reslab.tasks.verification import verification

    d = FaceData("olivetti", data, face_options({"image_size": 64}))
    flat = {k: d.x[k].reshape(len(d.x[k]), -1).numpy().astype(np.float64) / 255 for k in d.x}
    best = None
    t0 = time.time()
    for k in (5, 10, 20, 40, 80, 150):
        pca = PCA(n_components=k, svd_solver="full").fit(flat["train"])
        emb = {s: pca.transform(flat[s]) for s in ("val", "test")}
        emb = {s: e / np.linalg.norm(e, axis=1, keepdims=True) for s, e in emb.items()}
        val = verification(emb["val"], d.identity["val"], d.pairs["val"])
        if best is None or val["auc"] > best[1]["auc"]:
            best = (k, val, verification(emb["test"], d.identity["test"], d.pairs["test"]))
    keep = ("accuracy", "accuracy_sd", "auc", "tar_far1", "top1", "threshold", "roc")
    k, val, test = best
    return {"arm": "eigenfaces", "seed": None, "components": k, "fit_seconds": time.time() - t0,
            "val": {x: val[x] for x in keep}, "test": {x: test[x] for x in keep}}  # fmt: skip


def machine() -> dict:
    flags = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), ""
        )
        flags = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Flags")), "")
    except OSError:
        model = platform.processor()
    simd = [f for f in ("avx2", "avx512f", "fma") if f in flags.split()]
    return {"cpu": model, "simd": simd, "cores": os.cpu_count(), "threads": 1, "nice": 5}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "fixtures" / "olivetti-faces"))
    p.add_argument("--work", default=str(ROOT / "runs" / "face-compare"))
    p.add_argument("--report", action="store_true", help="only write the report from stored results")
    p.add_argument("--followup", action="store_true", help="train the follow-up's runs (followup-plan.md)")
    args = p.parse_args()
    (OUT / "runs").mkdir(parents=True, exist_ok=True)
    if not args.report:
        import torch

        torch.set_num_threads(1)
        eig = OUT / "runs" / "eigenfaces.json"
        if not eig.is_file():
            eig.write_text(json.dumps(eigenfaces(args.data)))
        seeds, arms = (FOLLOWUP_SEEDS, FOLLOWUP) if args.followup else (SEEDS, ARMS)
        for seed in seeds:  # seed-major: a stopped sweep has every arm at the same number of seeds
            for arm in arms:
                out = OUT / "runs" / f"{arm}-s{seed}.json"
                if out.is_file():
                    continue
                rec = train_one(arm, seed, args.data, Path(args.work))
                rec["machine"] = machine()
                out.write_text(json.dumps(rec))
                print(f"{arm} seed {seed}: test accuracy {100 * rec['test']['accuracy']:.2f}%, "
                      f"AUC {rec['test']['auc']:.4f}, {rec['train_seconds']:.0f} s", flush=True)  # fmt: skip
    sys.path.insert(0, str(Path(__file__).parent))
    from face_report import pairs_figure, write_report

    write_report(OUT)
    best = Path(args.work) / "resnet20-softmax-s0"
    if (best / "checkpoints").is_dir():
        pairs_figure(best, OUT / "pairs.png")


if __name__ == "__main__":
    main()
