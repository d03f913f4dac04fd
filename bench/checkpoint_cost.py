"""What the checkpoint checksums cost: SHA-256 time as a share of checkpoint time, writing and reading.

For each model (default ResNet-20 on 10 classes and ResNet-50 on 1000), a real training state is built
(weights, SGD momentum buffers after one step, RNG states) and saved through the engine's writer,
:class:`reslab.train.checkpoint.Checkpointer` (weights + state serialized, hashed, written atomically with
fsync, the previous generation kept, manifest written last). Timed, in the same round, on the same bytes:

- ``save``: one ``Checkpointer.save(["last"], ...)``, everything included;
- ``hash``: SHA-256 of the two serialized files (the part of ``save`` the checksums add, with the
  manifest write and the ``prev`` hard links, which are metadata operations);
- ``resume read``: verifying the newest generation and loading its state
  (``Checkpointer.load_resume_state``), and ``verify``: its hashing alone (``check_generation``);
- the same save and read as they were before checksums (weights and state written atomically; the state
  loaded unverified): the wall time the checksums add is the difference. (The hashing runs in a thread
  beside the writes, and verification hashes both files in parallel, so the time added can be less than
  the hashing time.)

Rounds are interleaved; times are medians over rounds, shares the median of each round's own ratio
(taken within one run and one round: the machine may be shared). Writes go to ``--dir`` (default: a temporary folder in the current directory, so on the
disk where runs live, not a tmpfs).

    python bench/checkpoint_cost.py [--models resnet20,resnet50] [--rounds 7] [--dir DIR] [--out cost.json]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from reslab._io import torch_load, write_bytes
from reslab.manifest import check_generation
from reslab.models import create_model
from reslab.models.weights import weights_bytes
from reslab.train.checkpoint import Checkpointer, rng_state

MODELS = {"resnet20": {"num_classes": 10}, "resnet50": {"num_classes": 1000}}


def training_state(name: str) -> tuple[torch.nn.Module, dict]:
    """A model and the state the engine checkpoints for it (one SGD step taken: momentum buffers exist)."""
    model = create_model(name, **MODELS.get(name, {}))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    size = 32 if model.num_classes == 10 else 64  # the state's size does not depend on the input's
    x = torch.randn(2, model.in_chans, size, size)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    opt.step()
    state = {
        "format": "reslab-train-state",
        "version": 1,
        "model_name": name,
        "step": 1,
        "model": model.state_dict(),
        "ema": None,
        "optimizer": opt.state_dict(),
        "rng": rng_state(),
        "best": {"metric": None, "value": float("inf"), "step": -1},
        "elapsed": 0.0,
        "win_log": [0.0, 0.0, 0],
        "win_eval": [0.0, 0.0, 0, 0.0],
        "final": {},
    }
    return model, state


def measure(name: str, rounds: int, folder: Path) -> dict:
    model, state = training_state(name)
    run = folder / name
    ck = Checkpointer(run)
    meta = {"config": {"model": name}}
    ck.save(["last"], model, meta, state)  # warm-up; also creates `last`, so later saves rotate it to `prev`
    t_save, t_plain, t_hash, t_read, t_plain_read, t_verify = [], [], [], [], [], []
    sizes = {}
    plain = folder / f"{name}-plain"
    plain.mkdir()
    for _ in range(rounds):
        t0 = time.perf_counter()
        ck.save(["last"], model, meta, state)
        t_save.append(time.perf_counter() - t0)

        t0 = time.perf_counter()  # what a save was before checksums: serialize, write both files atomically
        write_bytes(plain / "last.safetensors", weights_bytes(model, meta))
        buf = io.BytesIO()
        torch.save(state, buf)
        write_bytes(plain / "last.state.pt", buf.getvalue())
        t_plain.append(time.perf_counter() - t0)

        buf = io.BytesIO()
        torch.save(state, buf)
        blobs = {"weights": weights_bytes(model, meta), "state": buf.getvalue()}
        sizes = {k: len(v) for k, v in blobs.items()}
        t0 = time.perf_counter()
        for b in blobs.values():
            hashlib.sha256(b).hexdigest()
        t_hash.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        Checkpointer(run, main=False).load_resume_state()
        t_read.append(time.perf_counter() - t0)
        t0 = time.perf_counter()  # what resume read before: the state file, unverified
        torch_load(plain / "last.state.pt")
        t_plain_read.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert check_generation(run / "checkpoints", "last").sound
        t_verify.append(time.perf_counter() - t0)
    med = statistics.median
    mib = sum(sizes.values()) / 2**20
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "bytes": sizes,
        "save_s": med(t_save),
        "plain_save_s": med(t_plain),
        "hash_s": med(t_hash),
        "hash_share_of_save": med([h / t for h, t in zip(t_hash, t_save)]),  # per round, then the median
        "added_share_of_save": med([(t - p) / t for t, p in zip(t_save, t_plain)]),
        "resume_read_s": med(t_read),
        "plain_read_s": med(t_plain_read),
        "verify_s": med(t_verify),
        "verify_share_of_read": med([v / t for v, t in zip(t_verify, t_read)]),
        "added_share_of_read": med([(t - p) / t for t, p in zip(t_read, t_plain_read)]),
        "sha256_mib_per_s": mib / med(t_hash),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet20,resnet50")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary folder in .)")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ckpt-cost-", dir=args.dir or "."))
    try:
        rows = [measure(m.strip(), args.rounds, folder) for m in args.models.split(",") if m.strip()]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
    print(f"# {env}; median of {args.rounds} rounds")
    print(
        "| model | files | save | SHA-256 of both files | its share of save | save before checksums "
        "| wall time added | resume read | verify | its share | read before | wall time added |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ms = lambda s: f"{s * 1e3:.0f} ms"  # noqa: E731
    for r in rows:
        print(
            f"| {r['model']} | {sum(r['bytes'].values()) / 2**20:.1f} MiB | {ms(r['save_s'])} | "
            f"{ms(r['hash_s'])} | {r['hash_share_of_save']:.1%} | {ms(r['plain_save_s'])} | "
            f"{r['added_share_of_save']:.1%} | {ms(r['resume_read_s'])} | {ms(r['verify_s'])} | "
            f"{r['verify_share_of_read']:.1%} | {ms(r['plain_read_s'])} | {r['added_share_of_read']:.1%} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
