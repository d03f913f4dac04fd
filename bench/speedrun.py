"""The Fashion-MNIST speedrun table (issue 32): what each idea buys, in accuracy and in time relative to
today's ``fashion_mnist_demo`` (fp32, 2 epochs, ResNet-20: the ``make demo`` before issue 32), measured in
ONE process on ONE machine, the variants interleaved seed by seed (demo, variant 1, variant 2, ..., then
the next seed), each ``reslab train`` run in its own process with the same thread count.

A machine shared with other work slows whichever run happens to meet a busy moment, so only the ratios
measured within one invocation mean anything: each variant's time is divided by the demo's time *of the
same seed round* (the run beside it). The time is the whole ``reslab train`` process (start-up, data,
training, the evaluations: what ``make demo`` costs a user); the training time alone is also recorded.

Resumable: one JSON line per finished run is appended to ``--out``/results.jsonl as it finishes; a run
already there is not trained again (delete the line to redo it). Prints the table (mean, minimum and
per-seed test accuracy, time ratio) and the CPU flags that decide the precision.

    python bench/speedrun.py [--seeds 0,1,2] [--variants demo,bf16,...] [--threads 1] [--out DIR]
    python bench/speedrun.py --table-only --out DIR     # the table of what is there
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's reslab, for the probe and for every run
DEMO = "demo"
# name -> (what the idea is, the reslab train arguments). The first is the time reference.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    DEMO: (
        "today's demo: fashion_mnist_demo, fp32, 2 epochs",
        ["--recipe", "fashion_mnist_demo", "--set", "amp=off"],
    ),
    "speedrun": (
        "fashion_mnist_speedrun: bf16 (amp auto on this CPU), 4 epochs, flip TTA, one evaluation",
        ["--recipe", "fashion_mnist_speedrun"],
    ),
    "speedrun-e6": (
        "fashion_mnist_speedrun, 6 epochs",
        ["--recipe", "fashion_mnist_speedrun", "--epochs", "6"],
    ),
    "bf16": (
        "the demo in bf16 (amp auto on this CPU): 2 epochs",
        ["--recipe", "fashion_mnist_demo", "--set", "amp=auto"],
    ),
}


def cpu_flags() -> str:
    """The CPU's model and its bf16-related flags (lscpu's words), and torch's capability."""
    import torch

    from reslab.precision import cpu_bf16_probe

    model = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), "?")
    return f"{model}; {os.cpu_count()} CPUs; native bf16: {cpu_bf16_probe()}; torch {torch.__version__}"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def run_one(name: str, seed: int, threads: int, out: Path) -> dict:
    """Train one variant for one seed in a fresh process (a run directory that already holds the finished
    run is read, not trained again); its accuracy and times."""
    run_dir = out / "runs" / f"{name}-s{seed}"
    process_s = None
    if not _finished(run_dir):
        cmd = [sys.executable, "-m", "reslab", "train", *VARIANTS[name][1], "--model", "resnet20"]
        cmd += ["--seed", str(seed), "--set", f"threads={threads}", "--set", "tensorboard=false"]
        cmd += ["--device", "cpu", "--out", str(run_dir), "--overwrite", "--quiet"]
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        process_s = round(time.perf_counter() - t0, 2)
    s = json.loads((run_dir / "summary.json").read_text())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return {
        "variant": name,
        "seed": seed,
        "test_acc": round(100 - s["final"]["test_error"], 3),
        "run_s": s["wall_time_s"],  # the training loop with its evaluations (reslab's own clock)
        "process_s": process_s,  # the whole process (start-up, data), where this invocation ran it
        "precision": s["precision"],
        "epochs": s["epochs"],
        "threads": s["threads"],
        # the flips' share: the same weights evaluated without them (in the run's precision)
        "test_acc_no_tta": _no_tta_accuracy(run_dir) if cfg.get("tta_flip") else None,
    }


def _no_tta_accuracy(run_dir: Path) -> float:
    """Test accuracy of the run's final weights without test-time flips (``reslab eval --tta none``)."""
    out = run_dir / "eval-no-tta"
    if not (out / "eval.json").exists():
        cmd = [sys.executable, "-m", "reslab", "eval", str(run_dir / "checkpoints" / "last.safetensors")]
        cmd += ["--split", "test", "--tta", "none", "--device", "cpu", "--out", str(out)]
        env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return round(100 - json.loads((out / "eval.json").read_text())["test"]["top1_error"], 3)


def _finished(run_dir: Path) -> bool:
    try:
        return bool(json.loads((run_dir / "summary.json").read_text()).get("finished"))
    except (OSError, ValueError):
        return False


def load(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(rows: list[dict]) -> str:
    """Per variant: seeds, test accuracy (mean, min, each), time / the same round's demo (mean, each)."""
    demo = {r["seed"]: r["run_s"] for r in rows if r["variant"] == DEMO}
    lines = [
        "| variant | seeds | test acc % mean (min) | per seed | without flip TTA: mean | time / demo (per seed) | precision |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for name in VARIANTS:
        rs = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["seed"])
        if not rs:
            continue
        accs = [r["test_acc"] for r in rs]
        ratios = [r["run_s"] / demo[r["seed"]] for r in rs if r["seed"] in demo]
        ratio = f"{statistics.mean(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})" if ratios else "-"
        plain = [r["test_acc_no_tta"] for r in rs if r.get("test_acc_no_tta") is not None]
        no_tta = f"{statistics.mean(plain):.2f}" if plain else "-"
        lines.append(
            f"| {name}: {VARIANTS[name][0]} | {','.join(str(r['seed']) for r in rs)} | "
            f"{statistics.mean(accs):.2f} ({min(accs):.2f}) | {' / '.join(f'{a:.2f}' for a in accs)} | {no_tta} | "
            f"{ratio} | {rs[0]['precision']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS)
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench-speedrun"))
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    print(cpu_flags(), flush=True)
    if not args.table_only:
        done = {(r["variant"], r["seed"]) for r in load(args.out)}
        for seed in (int(s) for s in args.seeds.split(",")):
            for name in names:  # interleaved: every variant of one seed, then the next seed
                if (name, seed) in done:
                    continue
                row = run_one(name, seed, args.threads, args.out)
                with (args.out / "results.jsonl").open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print(table(load(args.out)))


if __name__ == "__main__":
    main()
