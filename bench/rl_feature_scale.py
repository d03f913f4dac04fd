"""The feature scale of each Atari encoder, measured after issue 34's Atari test (not a test of a cause).

At initialisation: each encoder built as the rl task builds it, re-initialised as stable-baselines3 does a
features extractor (``ActorCriticPolicy.init_weights``: orthogonal, gain sqrt(2), biases zero), on 16
random [0, 1] frames of 84x84x4 (torch seed 0). Trained: the agents of ``experiments/rl/ale-breakout-<model>-s0``
(local checkpoints, not committed) on 88 frames of random play (8 environments, seed 123, every fourth of 41
steps): the mean feature norm and the policy's mean entropy.

    python bench/rl_feature_scale.py [--runs experiments/rl]
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np
import torch

ARMS = ("impala_resnet", "impala_plain", "nature_cnn")


def at_init() -> dict[str, float]:
    from stable_baselines3.common.policies import ActorCriticPolicy

    from reslab.models import create_model

    torch.manual_seed(0)
    x = torch.rand(16, 4, 84, 84)
    out = {}
    for name in ARMS:
        net = create_model(name, num_classes=0, in_chans=4, img_size=(84, 84))
        net.apply(partial(ActorCriticPolicy.init_weights, gain=np.sqrt(2)))
        with torch.no_grad():
            out[name] = net(x).norm(dim=1).mean().item()
    return out


def trained(root: Path) -> dict[str, tuple[float, float]]:
    from reslab.data.envs import make_env
    from reslab.tasks.rl import load_agent

    env = make_env("ALE/Breakout-v5", 8, 123)
    rng = np.random.default_rng(0)
    frames = [env.reset()]
    for _ in range(40):
        frames.append(env.step(rng.integers(0, 4, size=8))[0])
    batch = np.concatenate(frames[::4])
    out = {}
    for name in ARMS:
        run = root / f"ale-breakout-{name}-s0"
        if not run.is_dir():
            continue
        policy = load_agent(run, env, "cpu")[0].policy
        with torch.no_grad():
            obs = policy.obs_to_tensor(batch)[0]
            feats = policy.extract_features(obs)
            entropy = policy.get_distribution(obs).entropy().mean().item()
        out[name] = (feats.float().norm(dim=1).mean().item(), entropy)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", default="experiments/rl", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    for name, norm in at_init().items():
        print(f"{name}: mean feature norm at SB3's init {norm:.1f}")
    for name, (norm, entropy) in trained(a.runs).items():
        print(f"{name} seed 0, trained: mean feature norm {norm:.1f}, policy entropy {entropy:.3f} nats")


if __name__ == "__main__":
    main()
