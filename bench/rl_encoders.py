"""Issue 34's experiment: IMPALA's residual encoder vs its plain twin vs MinAtar's small CNN, as the eyes of
stable-baselines3's PPO on MinAtar Breakout (the rl recipe's settings), 3 seeds per arm, one thread each.

    nice -n 10 python bench/rl_encoders.py --out runs/rl --steps 50000 --jobs 2   # resumable: rerun it

Each run is ``reslab train --task rl ...``; a finished run is skipped, an unfinished one resumed, and each
finished run's config.yaml, summary.json, metrics.csv and episodes.csv are copied to
``docs/results/rl/runs/<run>/`` (the report reads them there: ``bench/rl_report.py``). ``--fps-only``
measures steps per second per encoder on short runs (``--steps`` of them; per second of the run's wall
clock, and per CPU second of its process, start-up included, which a loaded machine disturbs less) and
writes ``fps.json``; ``--fps-only --amp off,bf16`` times each precision in one invocation (one machine,
one load: compare their ratio) into ``fps-precision.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ARMS = ("impala_resnet", "impala_plain", "minatar_cnn")
ATARI_ARMS = ("impala_resnet", "impala_plain", "nature_cnn")  # the Nature CNN fits 84x84 frames
SEEDS = "0,1,2"  # the first sweep's; --seeds for another
ENV = "MinAtar/Breakout-v1"
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "rl"
PUBLISHED = ("config.yaml", "summary.json", "metrics.csv", "episodes.csv")  # what the report reads


def run_name(env: str, model: str, seed: int) -> str:
    """``<model>-s<seed>`` on MinAtar Breakout (the first game), ``<game>-<model>-s<seed>`` on another MinAtar
    game, ``ale-<game>-<model>-s<seed>`` on an Atari game."""
    game = env.split("/")[-1].split("-")[0].lower()
    prefix = "ale-" if env.startswith("ALE/") else ""
    return f"{model}-s{seed}" if env == ENV else f"{prefix}{game}-{model}-s{seed}"


def arms_of(env: str) -> tuple[str, ...]:
    """The three encoders compared on ``env``: MinAtar's small CNN in the Nature CNN's place on MinAtar."""
    return ARMS if env.startswith("MinAtar/") else ATARI_ARMS


def command(run: Path, model: str, seed: int, steps: int, env: str = ENV, amp: str = "auto") -> list[str]:
    base = [sys.executable, "-m", "reslab", "train", "--quiet"]
    if (run / "config.yaml").exists():  # a budget changed since the run started is accepted as a change
        return [*base, "--resume", str(run), "--iterations", str(steps), "--accept-change", "iterations"]
    return [*base, "--task", "rl", "--env", env, "--algo", "ppo", "--model", model, "--seed", str(seed),
            "--iterations", str(steps), "--device", "cpu", "--set", "threads=1", "--set", "log_every=4096",
            "--set", "checkpoint_every=16384", "--set", f"amp={amp}", "--out", str(run)]  # fmt: skip


def one(
    out: Path, model: str, seed: int, steps: int, publish: bool, env: str = ENV, amp: str = "auto"
) -> str:
    run = out / run_name(env, model, seed)
    done = run / "summary.json"
    if not (done.exists() and json.loads(done.read_text()).get("finished")):
        variables = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(command(run, model, seed, steps, env, amp), check=True, env=variables)
    if publish:
        from reslab.experiments.publishing import copy_run_files

        copy_run_files(run, RESULTS / "runs" / run.name, PUBLISHED)
    return run.name


def measure_fps(out: Path, env: str, steps: int, amps: list[str]) -> None:
    """Steps per second of each encoder (and each ``amp``) on ``env``, one run at a time, into ``fps.json``
    (``env -> model``, the ``auto`` runs) or, for other ``amp`` settings, ``fps-precision.json``
    (``env -> amp -> model``, with the precision each run resolved to and the CPU's bf16 probe)."""
    from reslab.precision import cpu_bf16_probe

    arms = arms_of(env)
    for amp in amps:
        path = RESULTS / ("fps.json" if amp == "auto" else "fps-precision.json")
        fps = json.loads(path.read_text()) if path.exists() else {}
        for model in arms:
            t, cpu = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
            name = one(out / amp, model, 0, steps, publish=False, env=env, amp=amp)
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_s = (
                used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
            )  # the whole process, start-up too
            s = json.loads((out / amp / name / "summary.json").read_text())
            row = {
                "steps": s["timesteps"], "frames": s["frames"], "steps_per_wall_s": round(s["steps_per_s"], 1),
                "cpu_s": round(cpu_s, 2), "steps_per_cpu_s": round(s["timesteps"] / cpu_s, 1),
                "frames_per_cpu_s": round(s["frames"] / cpu_s, 1), "wall_s": round(time.time() - t, 1),
                "precision": s.get("precision", "fp32"),
            }  # fmt: skip
            if amp == "auto":
                fps.setdefault(env, {})[model] = row
            else:
                fps.setdefault("cpu_bf16", cpu_bf16_probe()[1])
                fps.setdefault(env, {}).setdefault(amp, {})[model] = row
            print(env, amp, model, row, flush=True)
            path.write_text(json.dumps(fps, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/rl")
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--fps-only", action="store_true")
    p.add_argument("--env", default=ENV, help="the game (default MinAtar/Breakout-v1)")
    p.add_argument("--seeds", default=SEEDS, help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--arms", default=None, help="comma-separated encoders (default: the game's three)")
    p.add_argument(
        "--amp", default="auto", help="--fps-only: comma-separated amp settings to time (e.g. off,bf16)"
    )
    a = p.parse_args()
    out = Path(a.out)
    if a.fps_only:  # one at a time: the timings do not compete with each other
        return measure_fps(out / "fps", a.env, a.steps, a.amp.split(","))
    seeds, arms = [int(x) for x in a.seeds.split(",")], a.arms.split(",") if a.arms else arms_of(a.env)
    jobs = [(m, s) for s in seeds for m in arms]  # seed by seed: a partial sweep stays balanced
    with ThreadPoolExecutor(a.jobs) as pool:
        for name in pool.map(lambda j: one(out, j[0], j[1], a.steps, publish=True, env=a.env), jobs):
            print("finished", name, flush=True)


if __name__ == "__main__":
    main()
