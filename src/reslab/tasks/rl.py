"""Reinforcement learning: reslab's encoders as the eyes of stable-baselines3's DQN and PPO agents.

``reslab train --task rl --env MinAtar/Breakout-v1 --algo ppo --model impala_resnet``: the environments
(MinAtar, Atari with SB3's standard wrappers) are :mod:`reslab.data.envs`'; the algorithms and their loops are
SB3's (Raffin et al. 2021); the encoder is :class:`ReslabExtractor`, SB3's ``BaseFeaturesExtractor`` around a
registered reslab model built with ``num_classes=0`` (:mod:`reslab.models.agents`), under SB3's own policy and
value heads. ``iterations`` counts agent steps summed over the parallel environments (SB3's
``total_timesteps``; PPO ends with the rollout that reaches it); ``frames``: emulator frames (x4 on Atari).
``lr`` and ``batch_size`` are the algorithm's learning rate and minibatch; its other settings are
:data:`ALGO_DEFAULTS` (PPO: SB3 rl-zoo's Atari ones; DQN: the MinAtar paper's, Young & Tian 2019), overridable
with ``--set task_kwargs.KEY=VALUE``. Deviations: a constant learning rate (rl-zoo anneals PPO's), Adam for
DQN (MinAtar's code: centred RMSProp), the encoder in bf16 autocast where ``amp`` resolves to bf16
(:class:`ReslabExtractor`; the papers trained in fp32), SB3's orthogonal init of the encoder (gain sqrt(2)).

The run directory is the project's (``reslab train`` calls :func:`drive` through the task seam):
``metrics.csv`` (every ``log_every`` steps: frames, episodes, mean returns since the last row and of the last
100 episodes, steps per second); ``episodes.csv``; ``summary.json`` (``final_return``: the mean of the last
100 training episodes); ``curves.png``; ``checkpoints/gen-<step>/`` (SB3's ``agent.zip``; DQN's replay buffer
``replay.pkl``, SB3's own pickle; ``state.json``), written whole and renamed into place every
``checkpoint_every`` steps, and ``checkpoints/last.safetensors`` (the encoder and the run's config: what
``reslab eval`` / ``predict`` read to find the task). ``--resume`` continues from the newest complete
generation and says what it restored; the environments restart (new episodes) and the random generators are
not restored, so a resumed run is not bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

import torch

from reslab._io import truncate_log, write_bytes, write_json
from reslab.config import TrainConfig
from reslab.data.envs import environment_kind, episode_gif, make_env, play_episodes
from reslab.errors import ConfigError, ReslabError
from reslab.tasks.base import EvalRequest, PredictRequest, Refusals, eval_dir, run_dir_of

try:  # the `rl` extra; without it the task refuses in one line (:func:`reslab.data.envs.need_rl`)
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
except ImportError:  # pragma: no cover - exercised only without the extra
    BaseCallback = BaseFeaturesExtractor = torch.nn.Module  # type: ignore[misc,assignment]

ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {"n_envs": 8, "n_steps": 128, "n_epochs": 4, "clip_range": 0.1, "ent_coef": 0.01, "vf_coef": 0.5,
            "gamma": 0.99, "gae_lambda": 0.95, "max_grad_norm": 0.5},
    "dqn": {"n_envs": 1, "buffer_size": 100_000, "learning_starts": 5_000, "target_update_interval": 1_000,
            "train_freq": 1, "exploration_steps": 100_000, "exploration_final_eps": 0.1, "gamma": 0.99},
}  # fmt: skip
EVAL_MAX_STEPS = 27_000  # agent steps per evaluation episode (Atari: 108k frames = 30 minutes of play)
COLUMNS = ("step", "frames", "episodes", "return_mean", "return_last100", "length_mean", "steps_per_s", "elapsed")  # fmt: skip
EPISODE_COLUMNS = ("episode", "step", "frames", "return", "length")


class ReslabExtractor(BaseFeaturesExtractor):
    """A registered reslab encoder as SB3's features extractor: ``create_model(model, num_classes=0,
    in_chans=C, img_size=(H, W), **model_kwargs)``; ``features_dim`` is the encoder's ``num_features``.

    ``precision`` is the run's resolved arithmetic (:func:`reslab.precision.resolve_amp` of ``amp`` when the
    run starts): ``"bf16"`` runs the encoder under bf16 autocast (its features returned in fp32 to SB3's
    heads, which stay fp32), ``"fp32"`` does not. SB3 saves these keyword arguments in ``agent.zip``, so a
    resumed or evaluated agent keeps the precision it was trained in (one saved before this argument: fp32).
    Its input is handed on channels-last (the convolutions follow it; the weights stay NCHW, as SB3's
    orthogonal init needs): the same function, faster on CPU (``bench/rl_encoders.py --fps-only``)."""

    def __init__(
        self,
        observation_space: Any,
        model: str = "impala_resnet",
        model_kwargs: dict | None = None,
        precision: str = "fp32",
    ) -> None:
        from reslab.models import create_model

        c, h, w = observation_space.shape
        kwargs = {"img_size": (h, w), **(model_kwargs or {})}
        net = create_model(model, num_classes=0, in_chans=c, **kwargs)
        super().__init__(observation_space, features_dim=net.num_features)
        self.net = net
        self.precision = precision

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations.float().contiguous(memory_format=torch.channels_last)
        bf16 = self.precision == "bf16" and x.device.type in ("cpu", "cuda")  # autocast's devices
        with torch.autocast("cuda" if x.device.type == "cuda" else "cpu", torch.bfloat16, enabled=bf16):
            return self.net(x).float()


def options(cfg: TrainConfig) -> dict[str, Any]:
    """The algorithm's settings: :data:`ALGO_DEFAULTS` with ``task_kwargs`` over them (an unknown key: one line)."""
    algo = cfg.algo or "ppo"
    opts = dict(ALGO_DEFAULTS[algo])
    unknown = sorted(set(cfg.task_kwargs) - set(opts))
    if unknown:
        raise ConfigError(f"task_kwargs.{unknown[0]}: {algo} takes {', '.join(sorted(opts))}")
    opts.update(cfg.task_kwargs)
    return opts


def build_agent(cfg: TrainConfig, env: Any, opts: dict[str, Any]) -> Any:
    """SB3's DQN or PPO with the config's encoder, learning rate, minibatch, seed and precision (``amp``
    resolved on the agent's device: :func:`reslab.precision.resolve_amp`)."""
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.utils import get_device

    from reslab.precision import precision_name, resolve_amp

    precision = precision_name(resolve_amp(cfg.amp, get_device(cfg.device)))
    extractor = {"model": cfg.model, "model_kwargs": dict(cfg.model_kwargs), "precision": precision}
    policy_kwargs = {"features_extractor_class": ReslabExtractor, "features_extractor_kwargs": extractor,
                     "normalize_images": environment_kind(cfg.env or "") == "atari"}  # fmt: skip
    common = {"learning_rate": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed, "verbose": 0,
              "device": cfg.device, "policy_kwargs": policy_kwargs}  # fmt: skip
    kw = {k: v for k, v in opts.items() if k not in ("n_envs", "exploration_steps")}
    if cfg.algo == "dqn":
        fraction = min(1.0, opts["exploration_steps"] / max(1, cfg.iterations or 1))
        return DQN("CnnPolicy", env, exploration_fraction=fraction, **common, **kw)
    return PPO("CnnPolicy", env, **common, **kw)


def extractor_of(agent: Any) -> ReslabExtractor:
    """The features extractor of an SB3 agent (PPO: the shared one; DQN: the online Q-network's)."""
    policy = agent.policy
    return policy.q_net.features_extractor if hasattr(policy, "q_net") else policy.features_extractor


def precision_words(agent: Any, cfg: TrainConfig) -> str:
    """What the agent's encoder computes in, and why (:func:`reslab.precision.precision_reason`)."""
    from reslab.precision import precision_reason

    dtype = torch.bfloat16 if extractor_of(agent).precision == "bf16" else None
    return precision_reason(cfg.amp, agent.device, dtype)


# ------------------------------------------------------------------------------------ checkpoints


def save_generation(run_dir: Path, agent: Any, cfg: TrainConfig, state: dict[str, Any]) -> None:
    """``checkpoints/gen-<step>/`` written whole under a temporary name and renamed into place, then
    ``last.safetensors`` (the encoder and the config) with its manifest (:mod:`reslab.manifest`: what
    ``reslab verify`` checks); the generations before the previous one removed."""
    from reslab.manifest import Manifest, sha256, write_manifest
    from reslab.models.weights import weights_bytes

    ck, step = run_dir / "checkpoints", int(state["num_timesteps"])
    final, tmp = ck / f"gen-{step:010d}", ck / f".gen-{step:010d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    agent.save(tmp / "agent.zip")
    if getattr(agent, "replay_buffer", None) is not None:
        agent.save_replay_buffer(tmp / "replay.pkl")
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    ident = {"step": step, "checkpoint_id": uuid.uuid4().hex, "run_id": state["run_id"]}
    config = cfg.to_dict() | {"precision": extractor_of(agent).precision}  # as classification runs record it
    data = weights_bytes(extractor_of(agent).net, {"config": json.dumps(config, default=str), **ident})
    write_bytes(ck / "last.safetensors", data)
    files = {"weights": {"sha256": sha256(data), "size": len(data)}}
    write_manifest(ck, "last", Manifest(step, ident["checkpoint_id"], state["run_id"], files))
    for old in generations(run_dir)[:-2]:
        shutil.rmtree(old, ignore_errors=True)


def generations(run_dir: Path) -> list[Path]:
    """The complete checkpoint generations of a run, oldest first."""
    ck = run_dir / "checkpoints"
    found = sorted(ck.glob("gen-*")) if ck.is_dir() else []
    return [g for g in found if (g / "state.json").is_file() and (g / "agent.zip").is_file()]


def load_agent(run_dir: Path, env: Any = None, device: str = "auto") -> tuple[Any, dict, TrainConfig]:
    """The newest generation's agent, its driver state and the run's config (one line if there is none)."""
    from stable_baselines3 import DQN, PPO

    gens = generations(run_dir)
    if not gens:
        raise ReslabError(f"{run_dir}: no complete checkpoint generation (checkpoints/gen-*/) to load")
    state = json.loads((gens[-1] / "state.json").read_text())
    cfg = TrainConfig.from_dict(state["config"], source=f"{gens[-1]}/state.json")
    cls = DQN if cfg.algo == "dqn" else PPO
    agent = cls.load(gens[-1] / "agent.zip", env=env, device=device)
    if env is not None and (gens[-1] / "replay.pkl").is_file():
        agent.load_replay_buffer(gens[-1] / "replay.pkl")
    return agent, state, cfg


# ----------------------------------------------------------------------------------------- training


class Recorder(BaseCallback):
    """SB3 callback: every finished episode to ``episodes.csv``, a ``metrics.csv`` row every ``log_every``
    steps, a checkpoint generation every ``checkpoint_every`` (at the start of a rollout: everything
    collected before it has been trained on), and a stop on SIGINT/SIGTERM."""

    def __init__(self, run: Any, cfg: TrainConfig, state: dict[str, Any], frame_mult: int) -> None:
        super().__init__()
        self.run, self.cfg, self.frame_mult = run, cfg, frame_mult
        self.episodes = int(state.get("episodes", 0))
        self.last100: deque[float] = deque(state.get("last100", []), maxlen=100)
        self.interval = list(state.get("interval", [0.0, 0, 0]))  # return sum, episodes, length sum
        self.elapsed0, self.t0 = float(state.get("elapsed", 0.0)), time.perf_counter()
        self.mark = (self.t0, int(state.get("num_timesteps", 0)))  # wall clock and step of the last row
        self.saved_at = int(state.get("num_timesteps", 0))
        self.stop_signal: int | None = None
        self.last_row: dict[str, Any] = dict(state.get("last_row", {}))
        self.run_id = str(state.get("run_id") or uuid.uuid4().hex)  # kept across resumes (the manifests')

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    def state(self) -> dict[str, Any]:
        return {"num_timesteps": int(self.num_timesteps), "episodes": self.episodes, "last100": list(self.last100),
                "interval": self.interval, "elapsed": self.elapsed(), "last_row": self.last_row, "run_id": self.run_id,
                "config": json.loads(json.dumps(self.cfg.to_dict(), default=str))}  # fmt: skip

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            ep = info.get("episode")
            if ep is None:
                continue
            self.episodes += 1
            r, n = float(ep["r"]), int(ep["l"])
            self.last100.append(r)
            self.interval = [self.interval[0] + r, self.interval[1] + 1, self.interval[2] + n]
            row = {"episode": self.episodes, "step": self.num_timesteps,
                   "frames": self.num_timesteps * self.frame_mult, "return": r, "length": n}  # fmt: skip
            self.run.append("episodes.csv", EPISODE_COLUMNS, row)
        if self.num_timesteps - self.mark[1] >= self.cfg.log_every:
            self.log_row()
        return self.stop_signal is None

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self.saved_at >= self.cfg.checkpoint_every:
            self.save()

    def log_row(self) -> None:
        """A ``metrics.csv`` row for the steps since the last one."""
        now, step = time.perf_counter(), int(self.num_timesteps)
        total, count, length = self.interval
        row = {"step": step, "frames": step * self.frame_mult, "episodes": self.episodes,
               "return_mean": total / count if count else None,
               "return_last100": sum(self.last100) / len(self.last100) if self.last100 else None,
               "length_mean": length / count if count else None,
               "steps_per_s": (step - self.mark[1]) / max(now - self.mark[0], 1e-9), "elapsed": round(self.elapsed(), 3)}  # fmt: skip
        self.run.append("metrics.csv", COLUMNS, row)
        self.interval, self.mark, self.last_row = [0.0, 0, 0], (now, step), row

    def save(self) -> None:
        save_generation(self.run.dir, self.model, self.cfg, self.state())
        self.saved_at = int(self.num_timesteps)


def _start(cfg: TrainConfig, run: Any, report: Any, resume: bool) -> tuple[Any, dict[str, Any], int]:
    """The agent (restored from the newest generation on ``resume``, else new), its driver state, and the
    frames per step; says what was restored."""
    if not cfg.env:
        raise ConfigError("--task rl needs --env (e.g. MinAtar/Breakout-v1 or ALE/Breakout-v5)")
    opts, frame_mult = options(cfg), 4 if environment_kind(cfg.env) == "atari" else 1
    gens = generations(run.dir) if resume else []
    if gens:
        step = int(json.loads((gens[-1] / "state.json").read_text())["num_timesteps"])
        env = make_env(cfg.env, opts["n_envs"], cfg.seed + step)  # new episodes, not the first ones again
        agent, state, _ = load_agent(run.dir, env, cfg.device)
        logs = (("metrics.csv", COLUMNS), ("episodes.csv", EPISODE_COLUMNS))  # rows after ``step`` recomputed
        bad = sum(truncate_log(run.dir / name, cols, step) for name, cols in logs)  # damaged ones: said
        buffer = f", the replay buffer ({agent.replay_buffer.size():,} transitions)" if cfg.algo == "dqn" else ""  # fmt: skip
        report.say(f"resuming {run.dir} at step {step:,}/{cfg.iterations:,} from {gens[-1].name}: restored the "
                   f"policy and its optimizer{buffer}, the episode log ({state['episodes']:,} episodes), the "
                   f"encoder's precision ({extractor_of(agent).precision}, kept); the environments restart "
                   f"(new episodes), the random generators are not restored{f'; {bad} damaged log row(s) dropped' if bad else ''}")  # fmt: skip
        return agent, state, frame_mult
    for name in ("metrics.csv", "episodes.csv"):
        (run.dir / name).unlink(missing_ok=True)
    agent = build_agent(cfg, make_env(cfg.env, opts["n_envs"], cfg.seed), opts)
    params = sum(p.numel() for p in extractor_of(agent).net.parameters())
    report.say(f"training {cfg.algo or 'ppo'} with {cfg.model} ({params / 1e6:.3f}M encoder parameters) on "
               f"{cfg.env} ({opts['n_envs']} environments) for {cfg.iterations:,} steps; lr {cfg.lr}, "
               f"batch {cfg.batch_size}, seed {cfg.seed}, device {agent.device}, {precision_words(agent, cfg)}")  # fmt: skip
    return agent, {}, frame_mult


def drive(cfg: TrainConfig, run: Any, report: Any, *, resume: bool = False) -> dict[str, Any]:
    """``reslab train --task rl``: SB3's ``learn`` in the run directory (see the module docstring)."""
    from reslab.owned import claim

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    claim(run.dir, "run", "episodes.csv")
    agent, state, frame_mult = _start(cfg, run, report, resume)
    run.write_config(cfg, precision_words(agent, cfg))
    rec = Recorder(run, cfg, state, frame_mult)
    remaining = int(cfg.iterations or 0) - int(agent.num_timesteps)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in handlers:
            signal.signal(s, lambda signum, frame: setattr(rec, "stop_signal", signum))
        if remaining > 0:
            agent.learn(remaining, callback=rec, reset_num_timesteps=False, progress_bar=False)
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    rec.num_timesteps = agent.num_timesteps
    if rec.num_timesteps != rec.mark[1] or not rec.last_row:  # the steps since the last row
        rec.log_row()
    rec.model = agent
    rec.save()
    if rec.stop_signal is not None:
        report.stopped(f"{signal.Signals(rec.stop_signal).name}: stopped at step {agent.num_timesteps:,}/"
                       f"{cfg.iterations:,}; checkpoint saved; continue with: reslab train --resume {run.dir}")  # fmt: skip
        raise KeyboardInterrupt
    return finish(cfg, run, agent, rec)


def finish(cfg: TrainConfig, run: Any, agent: Any, rec: Recorder) -> dict[str, Any]:
    """``summary.json`` and ``curves.png`` of a finished run; returns the summary."""
    from reslab.provenance import git_revision, versions

    summary = {
        "finished": True, "run_dir": str(run.dir), "task": cfg.task, "metric_names": ["return"],
        "model": cfg.model, "dataset": cfg.env, "env": cfg.env, "algo": cfg.algo or "ppo", "recipe": cfg.recipe,
        "params": sum(p.numel() for p in extractor_of(agent).net.parameters()),
        "policy_params": sum(p.numel() for p in agent.policy.parameters()),
        "steps": cfg.iterations, "timesteps": int(agent.num_timesteps),
        "frames": int(agent.num_timesteps) * rec.frame_mult, "episodes": rec.episodes,
        "final": rec.last_row, "final_return": sum(rec.last100) / len(rec.last100) if rec.last100 else None,
        "final_return_episodes": len(rec.last100), "best": None, "selection": "last",
        "wall_time_s": round(rec.elapsed(), 3), "steps_per_s": agent.num_timesteps / max(rec.elapsed(), 1e-9),
        "device": str(agent.device), "threads": torch.get_num_threads(), "versions": versions(),
        "precision": extractor_of(agent).precision, "precision_reason": precision_words(agent, cfg),
        "git_revision": git_revision(), "checkpoints": {"last": str(run.dir / "checkpoints" / "last.safetensors")},
        "curves": str(run.dir / "curves.png"),
    }  # fmt: skip
    plot_returns(run.dir, f"{cfg.algo or 'ppo'} / {cfg.model} on {cfg.env}")
    write_json(run.dir / "summary.json", summary)
    return summary


def plot_returns(run_dir: Path, title: str) -> None:
    """``curves.png``: each episode's return (dots) and the mean of the last 100 (line) against frames."""
    import csv

    import matplotlib.pyplot as plt

    from reslab import figstyle

    path = run_dir / "episodes.csv"
    with open(path if path.exists() else os.devnull, newline="") as f:
        rows = list(csv.DictReader(f))
    x, r = [int(row["frames"]) for row in rows], [float(row["return"]) for row in rows]
    mean100 = [sum(r[max(0, i - 99) : i + 1]) / min(i + 1, 100) for i in range(len(r))]
    with figstyle.style():
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(x, r, ".", ms=2, color="#999999", label="an episode")
        ax.plot(x, mean100, color=figstyle.BLUE, label="mean of the last 100")
        ax.set(xlabel="frames", ylabel="episode return", title=title)
        ax.legend(loc="upper left", frameon=False)
        fig.tight_layout()
        figstyle.save(fig, run_dir / "curves.png")


# ------------------------------------------------------------------------------ the trained agent


class RL(Refusals):
    """The reinforcement-learning task: :func:`drive` trains, :meth:`evaluate_checkpoint` plays episodes
    (``reslab eval``), :meth:`play` draws one (``reslab predict RUN --out episode.gif``)."""

    recipe = "rl"

    @staticmethod
    def recipe_for(settings: dict[str, Any]) -> str:
        """``--algo dqn`` starts from ``rl_dqn`` (the MinAtar paper's minibatch of 32), else ``rl`` (PPO's)."""
        return "rl_dqn" if settings.get("algo") == "dqn" else "rl"

    metric_names = ("return",)
    higher_is_better = True
    counts_errors = False
    selection = "last"
    eval_splits = ()
    plays_episodes = True
    drive = staticmethod(drive)
    _agent = (
        "an rl run's network is an encoder inside a stable-baselines3 agent (checkpoints/gen-*/agent.zip)"
    )
    refuses: ClassVar[dict[str, str]] = {
        "predict": "an rl run plays its environment and reads no image files: reslab predict RUN --out episode.gif",
        "export": f"{_agent}; load it with stable_baselines3's PPO.load / DQN.load",
        "features": f"{_agent}; list the encoder's stages with reslab features impala_resnet --input-size 4,84,84",
        "analyze": "reslab analyze measures image classifiers on their images; an rl run is measured by the "
        "returns of its episodes: reslab eval RUN --episodes N",
        "sample": "an rl run's inputs are its environment's frames: reslab predict RUN --out episode.gif plays one",
    }

    @classmethod
    def evaluate_checkpoint(cls, checkpoint: str, request: EvalRequest) -> dict[str, Any]:
        """``request.episodes`` (default 10) episodes of the deterministic policy on a fresh environment
        (seed 10,000 + the run's), each capped at :data:`EVAL_MAX_STEPS` steps; ``eval.json``."""
        n = 10 if request.episodes is None else request.episodes
        if n < 1:
            raise ConfigError(f"--episodes must be positive, got {n}")
        run = run_dir_of(checkpoint)
        agent, state, cfg = load_agent(run, device=request.device)
        env = make_env(cfg.env or "", 1, 10_000 + cfg.seed, max_steps=EVAL_MAX_STEPS)
        returns, lengths = play_episodes(agent, env, n)
        result = {"run": str(run), "env": cfg.env, "algo": cfg.algo, "model": cfg.model, "step": state["num_timesteps"],
                  "episodes": n, "deterministic": True, "returns": returns, "lengths": lengths,
                  "mean": statistics.fmean(returns), "sd": statistics.stdev(returns) if n > 1 else 0.0}  # fmt: skip
        out = eval_dir(run / "checkpoints" / "last.safetensors", request.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "eval.json", result)
        return result | {"eval_json": str(out / "eval.json")}

    @classmethod
    def evaluation_lines(cls, result: dict[str, Any]) -> list[str]:
        r = result["returns"]
        return [f"{result['env']}, {result['algo']} / {result['model']} at step {result['step']:,}: return "
                f"{result['mean']:.2f} ± {result['sd']:.2f} (sd) over {result['episodes']} episodes of the "
                f"deterministic policy (min {min(r):g}, max {max(r):g})", f"results: {result['eval_json']}"]  # fmt: skip

    @classmethod
    def play(
        cls, checkpoint: str, files: list[str], request: PredictRequest, *, out: Any, overwrite: bool
    ) -> str:
        """``reslab predict RUN --out episode.gif``: one episode of the deterministic policy, drawn frame by
        frame (at most 2,000 frames)."""
        if files:
            cls.refuse("predict")
        if not out or Path(out).suffix.lower() != ".gif":
            raise ConfigError("an rl run draws the episode it plays: give --out FILE.gif")
        out = Path(out)
        if out.exists() and not overwrite:
            raise ConfigError(f"{out} exists; pass --overwrite to replace it")
        agent, state, cfg = load_agent(run_dir_of(checkpoint), device=request.device)
        env = make_env(cfg.env or "", 1, 20_000 + cfg.seed, max_steps=EVAL_MAX_STEPS)
        frames: list[Any] = []
        (ret,), (length,) = play_episodes(agent, env, 1, frames)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(out, episode_gif(frames[:2000]))
        return (f"{cfg.env}: return {ret:g} in {length:,} steps (the agent of step {state['num_timesteps']:,}); "
                f"{min(len(frames), 2000)} frames -> {out}")  # fmt: skip
