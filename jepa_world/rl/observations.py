"""Observation wrappers: a goal-image task seen through a frozen world model.

``LatentObservation`` turns the task's pixels into the world model's latent (flattened, with
the proprioception and the goal image's latent beside it when asked), which is what a
goal-conditioned agent learns from; ``VectorLatentObservation`` does the same for a Gymnasium
vector env with one encoder pass for all sub-envs. ``GoalImageObservation`` only adds the goal
image to the task's observation dict, so that a policy called with observations alone (the
stable-baselines3 convention, e.g. ``PlannerPolicy``) sees the goal.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space
from torch import Tensor

from jepa_world.rl.layout import LatentLayout


@torch.no_grad()
def encode_pixels(world_model: Any, pixels: Any) -> Tensor:
    """uint8 frames [E,H,W,3] -> latents [E,K,D] on the CPU (float32)."""
    return world_model.encode(torch.as_tensor(np.asarray(pixels))).float().cpu()


def pixel_space(space: spaces.Space, wrapper: str) -> spaces.Dict:
    """The task's dict observation space, or one line saying why the wrapper cannot use it."""
    if not isinstance(space, spaces.Dict) or "pixels" not in space.spaces:
        raise ValueError(
            f"{wrapper} needs an env whose observations are a dict holding 'pixels' (a "
            f"jepa-world goal-image task, e.g. envs.make_task('reach')), got {space}"
        )
    return space


def check_action_size(action_space: spaces.Space, world_model: Any, wrapper: str) -> None:
    shape = getattr(action_space, "shape", None)
    if not isinstance(action_space, spaces.Box) or shape is None or len(shape) != 1:
        raise ValueError(f"{wrapper} needs a 1-d Box action space, got {action_space}")
    if shape[0] != int(world_model.action_dim):
        raise ValueError(
            f"the world model acts in {world_model.action_dim} dims but the env's actions have "
            f"{shape[0]}: it was trained on another task"
        )


def latent_layout(observation_space: spaces.Space, action_space: spaces.Space, world_model: Any,
                  proprio: bool, goal: bool, wrapper: str) -> LatentLayout:
    """The flat layout a latent wrapper gives a task's observations, after the checks."""
    space = pixel_space(observation_space, wrapper)
    check_action_size(action_space, world_model, wrapper)
    if proprio and "proprio" not in space.spaces:
        raise ValueError(f"{wrapper}(proprio=True): the env has no 'proprio' to add")
    proprio_dim = int(space["proprio"].shape[0]) if proprio else 0
    return LatentLayout.for_model(world_model, proprio_dim, goal)


def goal_pixels(info: dict[str, Any], wrapper: str) -> np.ndarray:
    if "goal_pixels" not in info:
        raise ValueError(
            f"{wrapper}(goal=True) needs the goal image in the reset info ('goal_pixels'), "
            "which jepa-world goal-image tasks provide"
        )
    return np.asarray(info["goal_pixels"])


class GoalImageObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Adds the episode's goal image (``info["goal_pixels"]`` at reset) to the observation
    dict as ``goal_pixels``."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = pixel_space(env.observation_space, "GoalImageObservation")
        self.observation_space = spaces.Dict({**space.spaces, "goal_pixels": space["pixels"]})
        self._goal: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._goal = goal_pixels(info, "GoalImageObservation")
        return self.observation(obs), info

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        return {**observation, "goal_pixels": self._goal}


class LatentObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Observations become float32 vectors [latent | proprio | goal latent] (see
    ``LatentLayout``); the goal latent is encoded once per episode. ``latent`` and
    ``goal_latent`` keep the last encodings ([1,K,D]) for wrappers such as GoalEnergyReward."""

    def __init__(
        self, env: gym.Env, world_model: Any, proprio: bool = True, goal: bool = True
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, world_model=world_model, proprio=proprio, goal=goal
        )
        gym.Wrapper.__init__(self, env)
        self.world_model = world_model
        self.layout = latent_layout(env.observation_space, env.action_space, world_model,
                                    proprio, goal, "LatentObservation")
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.layout.size,), np.float32)
        self.latent: Tensor | None = None
        self.goal_latent: Tensor | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if self.layout.goal:
            goal = goal_pixels(info, "LatentObservation")
            self.goal_latent = encode_pixels(self.world_model, goal[None])
        return self.observation(obs), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(obs), reward, terminated, truncated, info

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        self.latent = encode_pixels(self.world_model, np.asarray(observation["pixels"])[None])
        proprio = observation.get("proprio") if self.layout.proprio_dim else None
        return self.layout.join(self.latent, proprio, self.goal_latent)[0]


class VectorLatentObservation(VectorWrapper):
    """``LatentObservation`` for a Gymnasium vector env of goal-image tasks: one encoder pass
    per step for every sub-env; goals are re-encoded for the sub-envs that reset (autoreset
    puts their reset info, with ``goal_pixels``, into the step's infos)."""

    def __init__(
        self, env: VectorEnv, world_model: Any, proprio: bool = True, goal: bool = True
    ) -> None:
        super().__init__(env)
        self.world_model = world_model
        self.layout = latent_layout(env.single_observation_space, env.single_action_space,
                                    world_model, proprio, goal, "VectorLatentObservation")
        self.single_observation_space = spaces.Box(
            -np.inf, np.inf, (self.layout.size,), np.float32
        )
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)
        self.latent: Tensor | None = None
        self.goal_latent: Tensor | None = None

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None):
        obs, infos = self.env.reset(seed=seed, options=options)
        if self.layout.goal:
            self.goal_latent = encode_pixels(
                self.world_model, goal_pixels(infos, "VectorLatentObservation")
            )
        return self.observations(obs), infos

    def step(self, actions: Any):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        if self.layout.goal and "goal_pixels" in infos:
            mask = np.asarray(infos.get("_goal_pixels", np.ones(self.num_envs, bool)), bool)
            if mask.any():
                fresh = encode_pixels(self.world_model, np.asarray(infos["goal_pixels"])[mask])
                self.goal_latent[torch.from_numpy(mask)] = fresh
        return self.observations(obs), rewards, terminated, truncated, infos

    def observations(self, observations: dict[str, Any]) -> np.ndarray:
        self.latent = encode_pixels(self.world_model, observations["pixels"])
        proprio = observations.get("proprio") if self.layout.proprio_dim else None
        return self.layout.join(self.latent, proprio, self.goal_latent)
