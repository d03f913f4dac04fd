"""Game environments for reinforcement learning: gymnasium's, as the image observations reslab's encoders
read (the ``rl`` extra: gymnasium, MinAtar, ale-py, stable-baselines3's wrappers).

- MinAtar (Young & Tian 2019, "MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible
  Reinforcement Learning Experiments"): 10x10xC boolean frames, given as uint8 0/1 images (C, 10, 10);
  the ``v1`` ids use each game's minimal action set; MinAtar's own sticky actions (0.1) are kept.
- Atari through the ALE (``ale-py``; its wheel ships the ROMs) with stable-baselines3's ``make_atari_env``
  (``AtariWrapper``: up to 30 no-op starts, frame skip 4 with max-pooling of the last two frames, a lost
  life ends a training episode, FIRE on reset, 84x84 grey, rewards clipped to their sign) and
  ``VecFrameStack`` of 4 (Mnih et al. 2015, Methods "Preprocessing"). ``ALE/*-v5`` ids are made with
  ``frameskip=1`` (the wrapper skips) and keep v5's sticky actions (0.25); ``*NoFrameskip-v4`` ids have none.
- Every copy is wrapped in SB3's ``Monitor``, whose ``info["episode"]`` holds the game's own return (the
  unclipped score of a whole game, all lives).

:func:`draw_frame` draws an observation for ``reslab predict`` (a GIF of a played episode).
"""

from __future__ import annotations

from typing import Any

from reslab.errors import ConfigError


def need_rl() -> None:
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise ConfigError("reinforcement learning needs the rl extra: pip install 'reslab[rl]' (stable-baselines3, "
                          "gymnasium, minatar, ale-py)") from None  # fmt: skip


def environment_kind(env_id: str) -> str:
    """``"minatar"`` or ``"atari"`` for a registered gymnasium id (MinAtar's and ALE's registered here);
    one line for anything else."""
    import gymnasium as gym

    need_rl()
    from minatar.gym import register_envs

    if not any(k.startswith("MinAtar/") for k in gym.registry):
        register_envs()
    import ale_py

    gym.register_envs(ale_py)
    hint = "MinAtar/<Game>-v1 (Breakout, Asterix, Freeway, Seaquest, SpaceInvaders) or an Atari game (ALE/Pong-v5)"
    try:
        entry = str(gym.spec(env_id).entry_point)
    except gym.error.Error:
        raise ConfigError(f"unknown environment {env_id!r}; --env takes {hint}") from None
    if entry.startswith("minatar"):
        return "minatar"
    if entry.startswith("ale_py"):
        return "atari"
    raise ConfigError(
        f"environment {env_id!r} has no image frames reslab's encoders read; --env takes {hint}"
    )


def minatar_env(env_id: str, render: bool = False) -> Any:
    """A MinAtar game whose frames are uint8 (C, 10, 10) images (0/1), as SB3's image policies want them."""
    import gymnasium as gym
    import numpy as np

    env = gym.make(env_id, render_mode="array" if render else None)
    c = env.observation_space.shape[-1]
    space = gym.spaces.Box(0, 1, (c, *env.observation_space.shape[:2]), np.uint8)
    return gym.wrappers.TransformObservation(
        env, lambda o: np.ascontiguousarray(o.transpose(2, 0, 1), np.uint8), space
    )


def make_env(env_id: str, n_envs: int, seed: int, *, max_steps: int | None = None) -> Any:
    """``n_envs`` copies of the environment in one process (SB3's ``DummyVecEnv``, each in a ``Monitor``
    recording the game's own returns), seeded ``seed, seed+1, ...``; Atari with SB3's wrappers and 4 frames."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    kind = environment_kind(env_id)
    limit = {"wrapper_class": time_limit(max_steps)} if max_steps else {}
    if kind == "minatar":
        return make_vec_env(lambda: minatar_env(env_id), n_envs=n_envs, seed=seed, **limit)
    kwargs = {"frameskip": 1} if env_id.startswith("ALE/") else {}  # AtariWrapper skips frames itself
    env = make_atari_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=kwargs)
    return VecFrameStack(env, n_stack=4)


def time_limit(max_steps: int) -> Any:
    import gymnasium as gym

    return lambda env: gym.wrappers.TimeLimit(env, max_episode_steps=max_steps)


def draw_frame(obs: Any, scale: int) -> Any:
    """One observation as an RGB image: MinAtar's channels in the Okabe-Ito colours on black (the first
    set channel wins), an Atari stack's newest grey frame; enlarged ``scale`` times."""
    import numpy as np
    from PIL import Image

    if obs.shape[0] == 4 and obs.shape[-1] == 84:  # a stack of 4 grey frames (C, 84, 84)
        rgb = np.repeat(obs[-1][..., None], 3, axis=2)
    else:
        palette = np.array([[230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66], [0, 114, 178],
                            [213, 94, 0], [204, 121, 167], [255, 255, 255], [153, 153, 153], [120, 80, 40]])  # fmt: skip
        rgb = np.zeros((*obs.shape[1:], 3), np.uint8)
        for c in range(obs.shape[0] - 1, -1, -1):
            rgb[obs[c] > 0] = palette[c % len(palette)]
    img = Image.fromarray(rgb.astype(np.uint8))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def play_episodes(agent: Any, env: Any, n: int, frames: list | None = None) -> tuple[list[float], list[int]]:
    """Returns and lengths of ``n`` episodes of ``agent``'s deterministic policy (SB3's ``predict``) on the
    vectorized ``env`` (the first episode's observations appended to ``frames`` when given)."""
    returns, lengths, obs = [], [], env.reset()
    while len(returns) < n:
        if frames is not None and not returns:
            frames.append(obs[0])
        action, _ = agent.predict(obs, deterministic=True)
        obs, _, _, infos = env.step(action)
        for info in infos:
            if "episode" in info:
                returns.append(float(info["episode"]["r"]))
                lengths.append(int(info["episode"]["l"]))
    return returns[:n], lengths[:n]


def episode_gif(frames: list[Any]) -> bytes:
    """A GIF of observations (:func:`draw_frame`; MinAtar's 10x10 enlarged 16 times, Atari's 2 times)."""
    import io

    images = [draw_frame(f, 16 if f.shape[-1] <= 16 else 2) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=60, loop=0)
    return buf.getvalue()
