"""What each experiment's networks cost to train on this machine, relative to one measured network.

Sizes the ``standard`` budget's sweeps before they run (experiments/specs.py quotes the result). For every
distinct network the chosen experiments train (built exactly as :func:`reslab.experiments.specs.plan_runs`
plans it, on 1x28x28 Fashion-MNIST-shaped inputs with 10 classes), one training step is timed: forward,
cross-entropy, backward and an SGD step (momentum 0.9) on one preloaded random batch of 128, fp32,
channels-last, one torch thread, as ``--set threads=1`` sweeps train. Rounds are interleaved (every
network once per round) and the best time of each network is kept, so a machine shared with other work
slows all networks alike; the ratios to ``--reference`` are what carries over between machines.

A run's estimated wall time is its step ratio times ``--reference-minutes``, the measured wall time of one
standard-budget run of the reference network (ResNet-56: 56 min per run on the 2-core AMD EPYC with one
thread per run and two runs side by side, docs/results/degradation-standard/). Core-hours per experiment
sum the estimate over the runs of its default seeds; a run (network and seed) is paid for by the first
experiment in :data:`~reslab.experiments.specs.EXPERIMENTS`' order that trains it, and counted apart in the
later ones (their sweeps copy it: degradation's runs into depth, highway and relatives, depth's ResNet-32
into shortcuts). With ``--depths``, every experiment is taken to run at those depths.

Each step's minor page faults are reported too: glibc's ``malloc`` maps allocations above its mmap
threshold (at most 32 MB) fresh from the kernel and unmaps them when freed, so a network whose activations
exceed it (DenseNet-BC-100's concatenations: up to 87 MB at batch 128) pays for zeroing new pages on every
step. Running the script under ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736`` (glibc keeps
freed memory for reuse) shows what that costs.

    python bench/step_cost.py [--experiments relatives] [--depths 20,56] [--rounds 3] [--batch 128]
                              [--reference resnet56] [--reference-minutes 56] [--out cost.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from reslab.experiments.specs import EXPERIMENTS, parse_depths, parse_seeds, plan_runs
from reslab.models import create_model


def _network_key(model: str, kwargs: dict) -> str:
    return model + "".join(f" {k}={v}" for k, v in sorted(kwargs.items()))


def _step(
    net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, int]:
    """One training step: its wall time and the minor page faults it took (memory the allocator got
    fresh from the kernel and touched for the first time, e.g. a large activation ``malloc`` mapped anew)."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", default=",".join(EXPERIMENTS), help="comma list (default: all)")
    ap.add_argument("--budget", default="standard", help="whose default depths and seeds (default: standard)")
    ap.add_argument("--depths", help="comma list of depths for every experiment (default: each one's)")
    ap.add_argument("--batch", type=int, default=128, help="batch size (default: 128, the recipes')")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up round")
    ap.add_argument("--reference", default="resnet56", help="the network the ratios are to")
    ap.add_argument("--reference-minutes", type=float, default=56.0, help="its measured minutes per run")
    ap.add_argument("--out", help="write the measurements as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
    for exp in experiments:
        if exp not in EXPERIMENTS:
            raise SystemExit(f"step_cost: unknown experiment {exp!r}; choose from {', '.join(EXPERIMENTS)}")
    every_plan = {  # every experiment's, in the sweeps' order: who pays for a shared run depends on it
        exp: plan_runs(
            exp,
            depths=parse_depths(args.depths, exp, args.budget),
            seeds=parse_seeds(None, exp, args.budget),
            budget=args.budget,
        )
        for exp in EXPERIMENTS
    }
    plans = {exp: every_plan[exp] for exp in experiments}
    first_trained_by: dict[tuple[str, int], str] = {}  # (network, seed) -> the experiment that pays for it
    for exp, runs in every_plan.items():  # a later experiment copies what an earlier one trained
        for r in runs:
            first_trained_by.setdefault((_network_key(r.model, r.model_kwargs), r.seed), exp)

    specs: dict[str, tuple[str, dict, str]] = {args.reference: (args.reference, {}, args.reference)}
    for runs in plans.values():
        for r in runs:
            specs.setdefault(_network_key(r.model, r.model_kwargs), (r.model, r.model_kwargs, r.label))
    x = torch.randn(args.batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    nets = {}
    for key, (model, kwargs, _) in specs.items():
        net = create_model(model, num_classes=10, in_chans=1, **kwargs).to(memory_format=torch.channels_last)
        nets[key] = (net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9))
    times: dict[str, list[tuple[float, int]]] = {k: [] for k in nets}
    for rnd in range(args.rounds + 1):
        for key, (net, opt) in nets.items():
            t = _step(net, opt, x, y)
            if rnd:  # round 0 warms up allocators and kernels
                times[key].append(t)
    best = {k: min(v)[0] for k, v in times.items()}
    faults = {k: min(v)[1] for k, v in times.items()}  # those of the fastest round
    ref = best[args.reference]

    print(
        f"one training step, batch {args.batch}, 1x28x28, fp32, channels-last, 1 thread; best of {args.rounds} rounds"
    )
    print(
        f"{'network':40s} {'params':>10s} {'s/step':>8s} {'ratio':>6s} {'est. min/run':>12s} {'faults':>9s}"
    )
    rows = []
    for key, (_, _, label) in specs.items():
        params = sum(p.numel() for p in nets[key][0].parameters())
        ratio = best[key] / ref
        rows.append(
            {
                "network": key,
                "label": label,
                "params": params,
                "s_per_step": best[key],
                "page_faults_per_step": faults[key],
                "ratio": ratio,
                "est_minutes": ratio * args.reference_minutes,
            }
        )
        print(
            f"{key:40s} {params:10,d} {best[key]:8.3f} {ratio:6.2f} {ratio * args.reference_minutes:12.0f} {faults[key]:9,d}"
        )
    est = {r["network"]: r["est_minutes"] for r in rows}
    print(
        f"\ncore-hours per experiment at the {args.budget} budget ({args.reference} = {args.reference_minutes:g} min/run):"
    )
    totals = {}
    for exp, runs in plans.items():
        keys = [(_network_key(r.model, r.model_kwargs), r.seed) for r in runs]
        new = sum(est[net] for net, seed in keys if first_trained_by[net, seed] == exp)
        sources = sorted({first_trained_by[k] for k in keys} - {exp})
        reused = sum(est[key] for key, _ in keys) - new
        totals[exp] = {"runs": len(runs), "core_hours": new / 60, "reused_core_hours": reused / 60}
        print(
            f"  {exp:12s} {len(runs):3d} runs  {new / 60:5.1f} core-h"
            + (f" (+{reused / 60:.1f} copied from {', '.join(sources)})" if reused else "")
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "rounds": args.rounds,
            "batch": args.batch,
            "reference": args.reference,
            "reference_minutes": args.reference_minutes,
        }
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"meta": meta, "networks": rows, "experiments": totals}, fh, indent=1)


if __name__ == "__main__":
    main()
