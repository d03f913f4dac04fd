"""Reinforcement learning (issue 34): the agents' encoders against their papers' layer lists and SB3's
NatureCNN, and ``reslab train --task rl`` (PPO and DQN from stable-baselines3 on MinAtar) trained, killed,
resumed, evaluated and played through the command line."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from reslab.cli import main
from reslab.models import create_model

pytest.importorskip("stable_baselines3", reason="the rl extra (pip install 'reslab[rl]') is not installed")
pytest.importorskip("minatar", reason="the rl extra (pip install 'reslab[rl]') is not installed")

ROOT = Path(__file__).resolve().parents[1]

# Parameters of the encoders without the action layer (num_classes=0), counted by hand from the layer lists:
# IMPALA (Espeholt et al. 2018, Fig. 3): per stage conv3x3 (cin*c*9 + c) and 4 convs c*c*9 + c, channels
# 16/32/32 = 97,744 conv parameters for 4 input channels; Linear(32*11*11 -> 256) at 84x84 (84 -> 42 -> 21 ->
# 11), Linear(32*2*2 -> 256) at 10x10 (10 -> 5 -> 3 -> 2). Nature (Mnih et al. 2015): 8,224 + 32,832 + 36,928
# conv + Linear(3136 -> 512) = 1,684,128 (SB3's NatureCNN, checked below). MinAtar (Young & Tian 2019):
# 4*16*9 + 16 + Linear(8*8*16 -> 128) = 131,792.
COUNTS = [
    ("impala_resnet", 84, 97_744 + 3872 * 256 + 256),
    ("impala_plain", 84, 97_744 + 3872 * 256 + 256),
    ("nature_cnn", 84, 1_684_128),
    ("impala_resnet", 10, 97_744 + 128 * 256 + 256),
    ("impala_plain", 10, 97_744 + 128 * 256 + 256),
    ("minatar_cnn", 10, 131_792),
]
STAGES = {
    ("impala_resnet", 84): [(16, 42, 42), (32, 21, 21), (32, 11, 11)],
    ("impala_resnet", 10): [(16, 5, 5), (32, 3, 3), (32, 2, 2)],
    ("nature_cnn", 84): [(32, 20, 20), (64, 9, 9), (64, 7, 7)],
    ("minatar_cnn", 10): [(16, 8, 8)],
}
TINY = ["--task", "rl", "--env", "MinAtar/Breakout-v1", "--device", "cpu", "--set", "threads=1", "--quiet"]
TINY_PPO = [*TINY, "--algo", "ppo", "--batch-size", "32", "--set", "task_kwargs.n_envs=2",
            "--set", "task_kwargs.n_steps=32", "--set", "task_kwargs.n_epochs=1", "--set", "log_every=64"]  # fmt: skip
TINY_DQN = [*TINY, "--algo", "dqn", "--batch-size", "8", "--set", "task_kwargs.buffer_size=2000",
            "--set", "task_kwargs.learning_starts=50", "--set", "task_kwargs.target_update_interval=50",
            "--set", "log_every=100"]  # fmt: skip


def _call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------- encoders


@pytest.mark.parametrize(("name", "size", "params"), COUNTS)
def test_encoder_parameter_counts_and_shapes(name, size, params):
    model = create_model(name, num_classes=0, in_chans=4, img_size=size)
    assert sum(p.numel() for p in model.parameters()) == params
    x = torch.rand(2, 4, size, size)
    assert model(x).shape == (2, model.num_features)
    if (name, size) in STAGES:
        assert [tuple(s.shape[1:]) for s in model.forward_stages(x)] == STAGES[(name, size)]


def _impala_reference(model, x: torch.Tensor, identity: bool) -> torch.Tensor:
    """openai/baselines ``build_impala_cnn`` written out with torch.nn.functional on the model's weights."""
    sd = model.state_dict()
    for i in (1, 2, 3):
        x = F.conv2d(x, sd[f"down{i}.conv.weight"], sd[f"down{i}.conv.bias"], padding=1)
        x = F.max_pool2d(x, 3, 2, padding=1)
        for j in (0, 1):
            p = f"layer{i}.{j}.residual."
            h = F.conv2d(F.relu(x), sd[p + "conv1.weight"], sd[p + "conv1.bias"], padding=1)
            h = F.conv2d(F.relu(h), sd[p + "conv2.weight"], sd[p + "conv2.bias"], padding=1)
            x = x + h if identity else h
    return F.relu(F.linear(F.relu(x).flatten(1), sd["fc1.weight"], sd["fc1.bias"]))


@pytest.mark.parametrize("name", ["impala_resnet", "impala_plain"])
def test_impala_is_the_reference_network(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=0, in_chans=4, img_size=10).eval()
    x = torch.rand(3, 4, 10, 10)
    torch.testing.assert_close(model(x), _impala_reference(model, x, identity=name == "impala_resnet"))
    assert not torch.allclose(model(x), _impala_reference(model, x, identity=name != "impala_resnet"))


def test_nature_cnn_is_sb3s():
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.torch_layers import NatureCNN

    ref = NatureCNN(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), features_dim=512)
    model = create_model("nature_cnn", num_classes=0, in_chans=4).eval()
    names = ["layer1.0.residual.conv1", "layer2.0.residual.conv1", "layer3.0.residual.conv1", "fc1"]
    theirs = ["cnn.0", "cnn.2", "cnn.4", "linear.0"]
    model.load_state_dict({f"{m}.{k}": ref.state_dict()[f"{t}.{k}"] for m, t in zip(names, theirs)
                           for k in ("weight", "bias")})  # fmt: skip
    x = torch.rand(2, 4, 84, 84)
    torch.testing.assert_close(model(x), ref(x))


def test_nature_cnn_does_not_fit_minatar_frames_and_says_so():
    from reslab.errors import ConfigError

    with pytest.raises(ConfigError, match="10x10 is too small"):
        create_model("nature_cnn", num_classes=0, in_chans=4, img_size=10)


def test_extractor_is_an_sb3_features_extractor():
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    from reslab.tasks.rl import ReslabExtractor

    ext = ReslabExtractor(gym.spaces.Box(0, 1, (4, 10, 10), np.uint8), "impala_resnet", {"hidden": 64})
    assert isinstance(ext, BaseFeaturesExtractor) and ext.features_dim == 64
    assert ext(torch.zeros(5, 4, 10, 10, dtype=torch.uint8)).shape == (5, 64)


def test_extractor_precision_and_layout():
    """The extractor hands its encoder channels-last input (the same function as the registered network) and,
    with ``precision="bf16"``, under bf16 autocast, handing fp32 features to SB3's heads either way."""
    import gymnasium as gym
    import numpy as np

    from reslab.tasks.rl import ReslabExtractor

    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    torch.manual_seed(0)
    fp32, bf16 = (ReslabExtractor(space, "impala_resnet", precision=p) for p in ("fp32", "bf16"))
    bf16.load_state_dict(fp32.state_dict())
    reference = create_model("impala_resnet", num_classes=0, in_chans=4).eval()
    reference.load_state_dict(fp32.net.state_dict())
    x = torch.rand(3, 4, 84, 84)
    with torch.no_grad():
        a, b, ref = fp32(x), bf16(x), reference(x)
    assert a.dtype == b.dtype == torch.float32
    torch.testing.assert_close(a, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b, ref, rtol=0.05, atol=0.05)  # bf16 keeps ~3 significant digits
    assert not torch.equal(a, b)


@pytest.mark.parametrize(("amp", "precision"), [("bf16", "bf16"), ("off", "fp32")])
def test_run_records_and_keeps_its_precision(amp, precision, tmp_path):
    """``amp`` resolves when the run starts; the summary, the weights' config and the saved agent record it,
    and a resume keeps it (SB3 restores the extractor's arguments from agent.zip)."""
    from reslab.tasks.rl import extractor_of, load_agent

    run = tmp_path / "run"
    argv = ["train", *TINY_PPO, "--model", "minatar_cnn", "--set", f"amp={amp}", "--out", str(run)]
    assert _call([*argv, "--iterations", "64"])[0] == 0
    code, out, err = _call(
        ["train", "--resume", str(run), "--iterations", "128", "--accept-change", "iterations"]
    )
    assert code == 0, err
    assert f"the encoder's precision ({precision}, kept)" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["precision"] == precision and summary["timesteps"] == 128
    assert extractor_of(load_agent(run, device="cpu")[0]).precision == precision
    assert f"# {precision}" in (run / "config.yaml").read_text()


# -------------------------------------------------------------------------------------- the task


@pytest.mark.parametrize(("algo", "flags"), [("ppo", TINY_PPO), ("dqn", TINY_DQN)])
def test_tiny_run_evaluates_and_plays(algo, flags, tmp_path):
    run = tmp_path / "run"
    code, out, err = _call(
        ["train", *flags, "--model", "impala_resnet", "--iterations", "200", "--out", str(run)]
    )
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["algo"] == algo and summary["steps"] == 200
    assert summary["timesteps"] >= 200 and summary["params"] == 130_768
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header == "step,frames,episodes,return_mean,return_last100,length_mean,steps_per_s,elapsed"
    assert (run / "curves.png").stat().st_size > 0 and (run / "checkpoints" / "last.safetensors").is_file()
    code, out, err = _call(["eval", str(run), "--episodes", "2", "--device", "cpu"])
    assert code == 0, err
    assert "over 2 episodes of the deterministic policy" in out
    assert len(json.loads((run / "eval.json").read_text())["returns"]) == 2
    code, out, err = _call(["predict", str(run), "--out", str(tmp_path / "episode.gif"), "--device", "cpu"])
    assert code == 0, err
    from PIL import Image

    with Image.open(tmp_path / "episode.gif") as gif:
        assert gif.size == (160, 160) and gif.n_frames >= 1


def test_resume_after_sigkill_continues_and_says_what_it_restored(tmp_path):
    """A DQN run killed (SIGKILL) after its first checkpoint generation continues from it: the replay
    buffer comes back, the logs are cut at the checkpoint and the run reaches its budget."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "reslab", "train", *TINY_DQN, "--model", "minatar_cnn", "--iterations", "100000",
            "--set", "checkpoint_every=300", "--out", str(run)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300  # a loaded machine starts a process slowly
    while not list((run / "checkpoints").glob("gen-*/state.json")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gens = sorted((run / "checkpoints").glob("gen-*"))
    assert gens, proc.stderr.read().decode()
    step = json.loads((gens[-1] / "state.json").read_text())["num_timesteps"]
    config = (run / "config.yaml").read_text().replace("iterations: 100000", f"iterations: {step + 200}")
    (run / "config.yaml").write_text(config)  # a shorter budget for the test, accepted as a change below
    code, _, err = _call(
        ["train", "--resume", str(run), "--accept-change", "iterations", "--set", "threads=1"]
    )
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["timesteps"] == step + 200
    steps = [int(line.split(",")[1]) for line in (run / "episodes.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps)  # the rows past the checkpoint were cut, not doubled


def test_resume_message(tmp_path):
    run = tmp_path / "run"
    base = ["train", *TINY_DQN, "--model", "minatar_cnn", "--set", "checkpoint_every=100", "--out", str(run)]
    assert _call([*base, "--iterations", "150"])[0] == 0
    episodes = run / "episodes.csv"
    lines = episodes.read_bytes().split(b"\n")
    episodes.write_bytes(
        b"\n".join([lines[0], lines[1].replace(b",", b"\x00,", 1), *lines[2:]])
    )  # a damaged row
    args = ["train", "--resume", str(run), "--iterations", "300", "--accept-change", "iterations"]
    code, out, err = _call([a for a in args if a != "--quiet"])
    assert code == 0, err
    assert "restored the policy and its optimizer, the replay buffer (" in out
    assert "; 1 damaged log row(s) dropped" in out and b"\x00" not in episodes.read_bytes()
    assert json.loads((run / "summary.json").read_text())["timesteps"] == 300


def test_each_algorithm_starts_from_its_own_recipe():
    """--algo dqn takes the MinAtar paper's minibatch (32) without being told; PPO keeps rl-zoo's 256."""
    for argv, recipe, batch in [([], "rl", "256"), (["--algo", "dqn"], "rl_dqn", "32"),
                                (["--set", "algo=dqn"], "rl_dqn", "32"), (["--algo", "dqn", "--batch-size", "64"], "rl_dqn", "64")]:  # fmt: skip
        code, out, _ = _call(["train", "--task", "rl", *argv, "--print-config"])
        assert code == 0 and f"recipe: {recipe}" in out, out
        line = next(x for x in out.splitlines() if x.startswith("batch_size:"))
        assert line.split()[1] == batch, line


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--env", "MinAtar/Pacman-v1"], "unknown environment 'MinAtar/Pacman-v1'"),
        (["--env", "CartPole-v1"], "has no image frames"),
        (["--algo", "a2c"], "algo must be one of dqn, ppo, got 'a2c'"),
        (["--set", "task_kwargs.n_step=4"], "task_kwargs.n_step: ppo takes"),
    ],
)
def test_unknown_environment_or_algorithm_is_one_line(flags, needle, tmp_path):
    code, _, err = _call(
        ["train", "--task", "rl", *flags, "--iterations", "10", "--out", str(tmp_path / "r")]
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "r").exists()


def _rl_report():
    """bench/rl_report.py as a module (registered, as its dataclasses need)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl_report", ROOT / "bench" / "rl_report.py")
    report = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = report
    spec.loader.exec_module(report)
    return report


def test_the_committed_report_is_what_its_runs_give():
    """docs/results/rl/results.json (the verdicts of issue 34's sweep) is recomputed from the committed runs
    by bench/rl_report.py: the published numbers are the runs' numbers."""
    report = _rl_report()
    committed = json.loads((report.OUT / "results.json").read_text())
    claims = report.verdicts(report.load(report.OUT))
    assert [c["verdict"] for c in claims] == [c["verdict"] for c in committed["claims"]]
    for mine, theirs in zip(claims, committed["claims"]):
        assert mine["p"] == pytest.approx(theirs["p"]) and mine["n"] == theirs["n"] == [3, 3]


def test_the_committed_atari_report_is_what_its_runs_give():
    """docs/results/rl/atari-results.json (atari-plan.md's verdicts) is recomputed from the nine committed
    runs: each measured at 1M frames, Welch + Holm over the study's two claims."""
    report = _rl_report()
    committed = json.loads((report.OUT / "atari-results.json").read_text())
    claims = report.verdicts(report.load(report.OUT, report.ATARI), report.ATARI)
    assert [c["verdict"] for c in claims] == [c["verdict"] for c in committed["claims"]]
    for mine, theirs in zip(claims, committed["claims"]):
        assert mine["p_holm"] == pytest.approx(theirs["p_holm"]) and mine["n"] == theirs["n"] == [3, 3]


def test_the_feature_scale_bench_measures_each_encoder_at_sb3s_init():
    """bench/rl_feature_scale.py's first half (the report's numbers at initialisation): the residual
    encoder's features are an order of magnitude larger than its plain twin's under SB3's init."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl_feature_scale", ROOT / "bench" / "rl_feature_scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    norms = bench.at_init()
    assert set(norms) == {"impala_resnet", "impala_plain", "nature_cnn"}
    assert norms["impala_resnet"] > 10 * norms["impala_plain"] > 0


def test_the_atari_study_is_judged_as_planned(tmp_path, monkeypatch):
    """atari-plan.md's study, on made-up runs: each run measured at 1M frames (episodes after it ignored),
    Welch + Holm over its own two claims, a clear residual lead SUPPORTED and a tie INCONCLUSIVE; its files
    carry the ``atari-`` prefix."""
    report = _rl_report()
    monkeypatch.setattr(report, "OUT", tmp_path)
    level = {"impala_resnet": 30.0, "impala_plain": 10.0, "nature_cnn": 30.0}
    assert "nothing is tested" in report.write_study(report.ATARI)[0]  # no run yet
    for arm, base in level.items():
        for seed in (0, 1, 2):
            run = tmp_path / "runs" / f"ale-breakout-{arm}-s{seed}"
            run.mkdir(parents=True)
            summary = {"finished": True, "env": "ALE/Breakout-v5", "model": arm, "frames": 1_003_520,
                       "episodes": 300, "wall_time_s": 1.0, "params": 1, "steps_per_s": 60.0}  # fmt: skip
            (run / "summary.json").write_text(json.dumps(summary))
            rows = [f"{i},{i * 40},{i * 3_400},{base + seed + (i % 2)},100" for i in range(1, 300)]
            rows.append("300,250880,1003520,999.0,100")  # after the budget: not counted
            (run / "episodes.csv").write_text("episode,step,frames,return,length\n" + "\n".join(rows) + "\n")
            if (arm, seed) == ("impala_resnet", 0):  # one run of the nine: still nothing tested or written
                assert "1 of its runs finished" in report.write_study(report.ATARI)[0]
                assert not (tmp_path / "atari-results.json").exists()
    lines = report.write_study(report.ATARI)
    claims = json.loads((tmp_path / "atari-results.json").read_text())["claims"]
    assert [c["verdict"] for c in claims] == ["SUPPORTED", "INCONCLUSIVE"]
    assert claims[0]["claim"] == "ALE/Breakout-v5: impala_resnet > impala_plain in return at 1,000,000 frames"
    assert claims[0]["diff"] == pytest.approx(20.0) and claims[0]["n"] == [3, 3]
    assert (tmp_path / "atari-returns.png").stat().st_size > 0
    assert "return at 1M frames" in "\n".join(lines)


def test_an_atari_game_through_sb3s_wrappers(tmp_path):
    """ALE Breakout (ale-py's ROMs) with SB3's Atari wrappers: 84x84 grey frames, 4 stacked, frame skip 4
    (frames = 4 x steps), the Nature CNN as SB3 builds it (1,684,128 parameters)."""
    pytest.importorskip(
        "cv2", reason="SB3's Atari wrappers need OpenCV (the rl extra's opencv-python-headless)"
    )
    run = tmp_path / "run"
    flags = [*TINY_PPO, "--env", "ALE/Breakout-v5", "--model", "nature_cnn", "--iterations", "64"]
    code, _, err = _call(["train", *flags, "--set", "task_kwargs.n_envs=1", "--out", str(run)])
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["frames"] == 4 * summary["timesteps"] and summary["params"] == 1_684_128


def test_the_encoder_bench_publishes_a_run_as_a_record(tmp_path, monkeypatch):
    """bench/rl_encoders.py publishes a finished run (it trains nothing) through the experiments' publisher:
    the four files the report reads, the summary's paths relative to the run, no checkpoint copied."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl_encoders", ROOT / "bench" / "rl_encoders.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    run = tmp_path / "runs" / "impala_resnet-s0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.safetensors").write_bytes(b"weights")
    summary = {"finished": True, "run_dir": str(run), "curves": str(run / "curves.png")}
    (run / "summary.json").write_text(json.dumps(summary))
    for name in ("config.yaml", "metrics.csv", "episodes.csv", "curves.png"):
        (run / name).write_text(name)
    assert bench.one(tmp_path / "runs", "impala_resnet", 0, 10, publish=True) == "impala_resnet-s0"
    dest = tmp_path / "results" / "runs" / "impala_resnet-s0"
    assert sorted(p.name for p in dest.iterdir()) == sorted(bench.PUBLISHED)
    assert json.loads((dest / "summary.json").read_text())["curves"] == "curves.png"
    assert (dest / "episodes.csv").read_text() == "episodes.csv"
