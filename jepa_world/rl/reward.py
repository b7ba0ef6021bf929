"""A dense reward from images alone: minus the world model's energy to the goal image."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from torch import Tensor

from jepa_world.rl.observations import (
    LatentObservation,
    encode_pixels,
    goal_pixels,
    pixel_space,
)
from planners.energy import METRICS


class GoalEnergyReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """reward = -``world_model.energy(latent, goal latent, metric)`` after every step; the
    env's own reward moves to ``info["env_reward"]`` and its ``is_success`` stays in ``info``
    (a success signal for evaluation, not something the reward reads).

    Wraps a goal-image task, or a ``LatentObservation`` of one, whose encodings it reuses
    instead of running the encoder twice.
    """

    def __init__(self, env: gym.Env, world_model: Any, metric: str = "l2") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, world_model=world_model, metric=metric)
        gym.Wrapper.__init__(self, env)
        if metric not in METRICS:
            raise ValueError(f"unknown energy metric {metric!r} (known: {', '.join(METRICS)})")
        self.latents = env if isinstance(env, LatentObservation) else None
        if self.latents is None:
            pixel_space(env.observation_space, "GoalEnergyReward")
        self.world_model, self.metric = world_model, metric
        self._goal: Tensor | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if self.latents is not None and self.latents.goal_latent is not None:
            self._goal = self.latents.goal_latent
        else:
            goal = goal_pixels(info, "GoalEnergyReward")
            self._goal = encode_pixels(self.world_model, goal[None])
        return obs, info

    def step(self, action: Any):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        if self.latents is not None:
            latent = self.latents.latent
        else:
            latent = encode_pixels(self.world_model, np.asarray(obs["pixels"])[None])
        energy = self.world_model.energy(latent, self._goal.to(latent.device), self.metric)
        info = {**info, "env_reward": env_reward, "energy": float(energy[0])}
        return obs, -float(energy[0]), terminated, truncated, info
