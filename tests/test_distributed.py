"""Distributed training (torchrun + DistributedDataParallel) on CPU with gloo: 2 ranks, a tiny model and
synthetic data. See docs/distributed.md."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reslab.errors import ConfigError, ReslabError
from reslab.tasks.base import Dist, reduce_error
from reslab.train import TrainConfig
from reslab.train import checkpoint as ckpt
from reslab.train.distributed import (
    assert_replicas_in_sync,
    init_distributed,
    load_loader_state,
    loader_state,
)

RECIPE = """\
model: resnet
model_kwargs: {depth: 8}
dataset: synthetic
subset: 128
val_split: 32
batch_size: 32
iterations: 8
lr: 0.05
eval_every: 4
log_every: 2
checkpoint_every: 4
device: cpu
threads: 1
tensorboard: false
eval_batch_size: 16
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESLAB_FAULT", "RANK", "WORLD_SIZE"))}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _torchrun(nproc: int, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "reslab", "train", *args,
    ]  # fmt: skip
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env or _env(), capture_output=True, text=True, timeout=timeout)
    return p, time.monotonic() - t0


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(ckpt.weights_path(run, "last")))


def _last_metrics(run: Path) -> dict[str, str]:
    import csv

    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))[-1]


def test_two_ranks_train_die_and_resume(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)

    # --- a full 2-rank run: one set of files, replicas checked in sync by the engine at the end
    full = tmp_path / "full"
    p, _ = _torchrun(2, "--recipe", str(recipe), "--out", str(full))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert p.stdout.count("done: 8 iterations") == 1  # rank 0 alone reports
    names = sorted(q.name for q in full.iterdir())
    assert names == sorted(
        [
            "checkpoints",
            "config.yaml",
            "curves.png",
            "metrics.csv",
            "reslab-run.json",
            "summary.json",
            "train.lock",
            "train_log.csv",
        ]
    )
    assert sorted(q.name for q in (full / "checkpoints").iterdir()) == [
        f"{g}.{kind}"
        for g in ("best", "last", "prev")
        for kind in ("manifest.json", "safetensors", "state.pt")
    ]  # generations with their checksum manifests (docs/reliability.md)
    import json

    summary = json.loads((full / "summary.json").read_text())
    assert summary["finished"] and summary["world_size"] == 2 and summary["batch_size"] == 32
    rows = (full / "metrics.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["4", "8"]  # each evaluation logged once
    state = ckpt.load_state(full, "last")
    assert state["step"] == 8 and state["loader"]["samples"] in (0, 64)

    # --- the reduced evaluation equals a single-process evaluation of the same weights
    from reslab.tasks.classification import evaluate_checkpoint

    torch.set_num_threads(1)
    ev = evaluate_checkpoint(str(ckpt.weights_path(full, "last")), out_dir=str(tmp_path / "ev"), device="cpu")
    last = _last_metrics(full)
    assert ev["val"]["n"] == 32 and ev["test"]["n"] == 256
    assert f"{ev['val']['top1_error']:.6g}" == last["val_error"]
    assert f"{ev['test']['top1_error']:.6g}" == last["test_error"]

    # --- rank 1 is killed at step 5: torchrun ends the job quickly, the step-4 checkpoint stays valid
    dead = tmp_path / "dead"
    p, wall = _torchrun(
        2, "--recipe", str(recipe), "--out", str(dead), "--quiet",
        env=_env(RESLAB_FAULT="step:5:SIGKILL", RESLAB_FAULT_RANK="1"),
    )  # fmt: skip
    assert p.returncode != 0
    assert wall < 60, f"the job took {wall:.0f} s to end after a rank died"
    assert not (dead / "summary.json").exists()
    assert ckpt.pair_matches(dead, "last")
    st = ckpt.load_state(dead, "last")
    assert st["step"] == 4 and st["loader"]["samples"] == 32  # epoch 1, one global batch of 32 consumed
    one = tmp_path / "one"
    shutil.copytree(dead, one)

    # --- resumed with the same world size on CPU: bit-identical to the uninterrupted run
    p, _ = _torchrun(2, "--resume", str(dead), "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = _weights(full), _weights(dead)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _last_metrics(dead)["test_error"] == _last_metrics(full)["test_error"]

    # --- resumed by a single process (another world size): continues at the same global position
    q = subprocess.run(
        [sys.executable, "-m", "reslab", "train", "--resume", str(one), "--quiet"],
        env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert q.returncode == 0, q.stderr[-3000:]
    assert json.loads((one / "summary.json").read_text())["world_size"] == 1
    assert [r.split(",")[0] for r in (one / "metrics.csv").read_text().strip().splitlines()[1:]] == ["4", "8"]
    c = _weights(one)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # BN batch statistics over 32, not 16 images
    assert max((a[k].double() - c[k].double()).abs().max().item() for k in a) < 0.5


def _setenv(monkeypatch, world: int, rank: int = 0) -> None:
    for k, v in {"WORLD_SIZE": world, "RANK": rank, "LOCAL_RANK": rank, "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.setenv("MASTER_PORT", "1")  # never contacted: the checks fail first


def test_global_batch_must_divide_and_sync_bn_needs_cuda(monkeypatch):
    _setenv(monkeypatch, 3)
    with pytest.raises(
        ConfigError, match=r"batch_size 32 is the global batch and must divide by the 3 ranks"
    ):
        init_distributed(TrainConfig(iterations=1, batch_size=32, device="cpu").validate())
    _setenv(monkeypatch, 2)
    with pytest.raises(ConfigError, match="sync_bn needs CUDA"):
        init_distributed(TrainConfig(iterations=1, batch_size=32, device="cpu", sync_bn=True).validate())
    monkeypatch.delenv("WORLD_SIZE")
    assert init_distributed(TrainConfig(iterations=1).validate()) == Dist()


def test_global_batches_and_loader_state_do_not_depend_on_world_size():
    from reslab.data import DeviceLoader

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (70, 1, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.arange(70)
    kw = dict(augment=True, pad=2, seed=3)
    one = DeviceLoader(x, y, 16, **kw)
    two = [DeviceLoader(x, y, 8, shard=(r, 2), **kw) for r in range(2)]
    four = [DeviceLoader(x, y, 4, shard=(r, 4), **kw) for r in range(4)]
    assert len(one) == len(two[0]) == len(four[0]) == 4
    for xb, yb in one:
        parts = [next(iter(ld)) for ld in two]
        got = torch.cat([p[1] for p in parts])
        assert sorted(got.tolist()) == sorted(yb.tolist())  # the same samples in global batch i
        xs = {
            int(lbl): img
            for lbl, img in zip(torch.cat([p[1] for p in parts]), torch.cat([p[0] for p in parts]))
        }
        for lbl, img in zip(yb.tolist(), xb):
            assert torch.equal(xs[lbl], img)  # ... with the same crop and flip
        break
    # a 2-rank position (epoch 1, after 3 global batches) restored into 1 and 4 ranks
    for ld in two:
        ld.load_state_dict({"epoch": 1, "position": 3})
    s = loader_state(two[0], Dist(0, 2))
    assert s["samples"] == 48
    load_loader_state(one, s, Dist())
    assert (one.epoch, one.position) == (1, 3)
    load_loader_state(four[1], s, Dist(1, 4))
    assert (four[1].epoch, four[1].position) == (1, 3)
    with pytest.raises(ReslabError, match="not a multiple of the global batch"):
        load_loader_state(one, dict(s, samples=40), Dist())


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    dist = init_distributed(TrainConfig(iterations=1, batch_size=8, device="cpu").validate())
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
        assert_replicas_in_sync(model, dist)  # same seed: equal
        # each rank: 10 + 5 * rank samples, 3 + rank wrong -> 7 of 25 over both
        err = reduce_error(
            {"n": 10 + 5 * rank, "top1_error": 100.0 * (3 + rank) / (10 + 5 * rank)}, dist, "cpu"
        )
        if rank == 1:
            with torch.no_grad():
                model[1].running_mean += 1e-6
        try:
            assert_replicas_in_sync(model, dist)
            caught = ""
        except ReslabError as e:
            caught = str(e)
        Path(out, f"rank{rank}.txt").write_text(f"{err!r}\n{caught}")
    finally:
        dist.close()


def test_replica_check_and_reduced_error_two_processes(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        err, caught = (tmp_path / f"rank{rank}.txt").read_text().split("\n", 1)
        assert float(err) == 100.0 * 7 / 25
        assert "replicas differ" in caught and "'1.running_mean'" in caught


def test_default_recipe_on_synthetic_data_under_torchrun(tmp_path):
    """``torchrun --nproc_per_node=2 -m reslab train --dataset synthetic``: the default recipe's validation
    split adapts to the 1,024 synthetic images on every rank (it used to fail with val_size ... 5000)."""
    out = tmp_path / "ddp"
    p, _ = _torchrun(
        2, "--dataset", "synthetic", "--model", "resnet", "--set", "model_kwargs.depth=8",
        "--iterations", "4", "--batch-size", "32", "--device", "cpu", "--out", str(out), "--quiet",
        "--set", "tensorboard=false", "--set", "eval_every=0",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["selection"] == "val_error"
