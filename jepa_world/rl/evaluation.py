"""Success of any policy with stable-baselines3's ``predict`` on the held-out episodes of
``planners.mpc``: the same seeds, the task's goal protocol and its judgement at the end of the
budget (and at any step, beside it)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def held_out_success(agent: Any, env: gym.Env, episodes: int, seed: int = 0) -> tuple[float, float]:
    """(success rate at the end of each episode, at any step) over ``episodes`` episodes reset
    with ``planners.episodes.eval_seed(seed, i)``; ``env`` ends episodes at the budget (a
    ``TimeLimit``). ``info["success_any"]`` (``BlockActions``) counts steps inside a block."""
    from planners.episodes import eval_seed

    end, anytime = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=eval_seed(seed, i))
        done, hit = False, False
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            hit = hit or bool(info.get("success_any", False)) or bool(info["is_success"])
            done = terminated or truncated
        end.append(bool(info["is_success"]))
        anytime.append(hit)
    return float(np.mean(end)), float(np.mean(anytime))
