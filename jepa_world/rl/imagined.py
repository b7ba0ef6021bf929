"""Environments that step in the world model's latent space instead of the simulator.

Episodes start from recorded frames (encoded once, ``ImaginedStarts``) and aim at a frame that
the same recorded episode reached a few blocks later, so every goal is reachable. One step is
one action block (``frameskip`` env steps) predicted by ``WorldModel.step`` from the current
latent alone; the reward is minus the energy to the goal latent. Observations use the layout of
``LatentObservation`` ([latent | proprio | goal latent]), so an agent trained here acts in the
real task through ``LatentObservation`` unchanged. There is no success signal in imagination:
episodes end by truncation after ``max_blocks`` steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import Tensor

from jepa_world.data.episodes import EpisodeDataset
from jepa_world.data.latents import LatentTrajectories
from jepa_world.rl.layout import LatentLayout
from planners.energy import METRICS


class ImaginedStarts:
    """Latents, proprioception and lengths of recorded episodes, encoded once by the world
    model; share one instance between environments."""

    def __init__(self, world_model: Any, datasets: Any, episodes: int | None = None) -> None:
        items = datasets if isinstance(datasets, (list, tuple)) else [datasets]
        opened = [d if isinstance(d, EpisodeDataset) else EpisodeDataset(Path(d)) for d in items]
        if not opened:
            raise ValueError("ImaginedStarts needs at least one recorded dataset")
        trained_on = getattr(getattr(world_model, "config", None), "env_id", None)
        for data in opened:
            if trained_on and data.env_id != trained_on:
                raise ValueError(
                    f"dataset {data.root} records {data.env_id} but the world model was "
                    f"trained on {trained_on}"
                )
            actions = data.arrays(0)["actions"]
            if actions.shape[1] != int(world_model.action_dim):
                raise ValueError(
                    f"dataset {data.root} has {actions.shape[1]}-d actions but the world model "
                    f"acts in {world_model.action_dim}"
                )
        with torch.no_grad():
            encoded = LatentTrajectories(opened, world_model, 256, False, limit=episodes)
        self.latents: list[Tensor] = encoded.latents
        self.proprio: list[Tensor] = encoded.proprio
        self.frameskip = int(world_model.frameskip)
        self.lengths = np.array([len(z) for z in self.latents])  # frames per episode
        if (self.lengths <= self.frameskip).any():
            raise ValueError(f"every episode needs more than {self.frameskip} frames")

    def __len__(self) -> int:
        return len(self.latents)

    def draw(self, rng: np.random.Generator, within: int) -> tuple[int, int, int]:
        """(episode, start frame, goal blocks ahead) with the goal inside the episode."""
        episode = int(rng.integers(len(self.latents)))
        last_start = int(self.lengths[episode]) - 1 - self.frameskip
        start = int(rng.integers(last_start + 1))
        reachable = (int(self.lengths[episode]) - 1 - start) // self.frameskip
        ahead = int(rng.integers(1, min(within, reachable) + 1))
        return episode, start, ahead


class _Imagination:
    """What the single and the vector env share: spaces, checks, drawing and stepping."""

    def __init__(
        self,
        world_model: Any,
        starts: Any,
        max_blocks: int,
        goal_within: int | None,
        metric: str,
        proprio: bool,
        repeat_action: bool,
        action_low: float,
        action_high: float,
        episodes: int | None,
    ) -> None:
        if int(max_blocks) < 1:
            raise ValueError(f"max_blocks must be a positive integer, got {max_blocks}")
        if metric not in METRICS:
            raise ValueError(f"unknown energy metric {metric!r} (known: {', '.join(METRICS)})")
        if not float(action_low) < float(action_high):
            raise ValueError(f"action_low must be below action_high, got {action_low}, {action_high}")
        model_proprio = int(getattr(world_model, "proprio_dim", 0) or 0)
        if proprio and not model_proprio:
            raise ValueError("this world model does not predict proprioception: use proprio=False")
        self.world_model, self.metric = world_model, metric
        self.max_blocks = int(max_blocks)
        self.goal_within = int(goal_within or max_blocks)
        if self.goal_within < 1:
            raise ValueError(f"goal_within must be a positive integer, got {goal_within}")
        self.starts = starts if isinstance(starts, ImaginedStarts) else ImaginedStarts(
            world_model, starts, episodes
        )
        self.frameskip, self.action_dim = int(world_model.frameskip), int(world_model.action_dim)
        self.repeat_action = bool(repeat_action)
        self.reads_proprio = model_proprio > 0
        self.layout = LatentLayout.for_model(world_model, model_proprio if proprio else 0, True)
        size = self.action_dim * (1 if repeat_action else self.frameskip)
        self.low, self.high = float(action_low), float(action_high)
        self.action_space = spaces.Box(self.low, self.high, (size,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.layout.size,), np.float32)

    def draw(self, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor, int]:
        episode, start, ahead = self.starts.draw(rng, self.goal_within)
        z = self.starts.latents[episode][start]
        goal = self.starts.latents[episode][start + ahead * self.frameskip]
        return z, self.starts.proprio[episode][start], goal, ahead

    def blocks(self, actions: Any) -> Tensor:
        """[E, A] (held for the block) or [E, fs*A] -> clipped [E, fs, A]."""
        a = torch.as_tensor(np.asarray(actions, dtype=np.float32))
        expected = self.action_space.shape[0]
        if a.dim() != 2 or a.shape[1] != expected:
            raise ValueError(f"actions must be [E,{expected}], got {tuple(a.shape)}")
        a = a.clamp(self.low, self.high)
        if self.repeat_action:
            return a.unsqueeze(1).expand(-1, self.frameskip, -1).contiguous()
        return a.reshape(-1, self.frameskip, self.action_dim)

    @torch.no_grad()
    def advance(
        self, z: Tensor, proprio: Tensor, goal: Tensor, actions: Any
    ) -> tuple[Tensor, Tensor, np.ndarray]:
        """One block for every row: next latents, next proprio, rewards."""
        device = self.world_model.device
        z_next, p_next = self.world_model.step(
            z.to(device), self.blocks(actions).to(device),
            proprio.to(device) if self.reads_proprio else None,
        )
        energy = self.world_model.energy(z_next, goal.to(device), self.metric)
        p_next = proprio if p_next is None else p_next
        return z_next.cpu(), p_next.cpu(), (-energy).cpu().numpy().astype(np.float64)

    def observe(self, z: Tensor, proprio: Tensor, goal: Tensor) -> np.ndarray:
        return self.layout.join(z, proprio.numpy() if self.layout.proprio_dim else None, goal)


class ImaginedEnv(gym.Env):
    """A Gymnasium env in the world model's latent space (see the module docstring).

    ``starts``: recorded dataset folder(s) / ``EpisodeDataset``(s) of the model's task, or an
    ``ImaginedStarts``; ``episodes`` limits how many recorded episodes are encoded.
    ``repeat_action``: the action is one env-step action held for the block (what transfers to
    the real task step by step); else a whole block of ``frameskip`` actions, flattened.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        world_model: Any,
        starts: Any,
        *,
        max_blocks: int = 10,
        goal_within: int | None = None,
        metric: str = "l2",
        proprio: bool = True,
        repeat_action: bool = True,
        action_low: float = -1.0,
        action_high: float = 1.0,
        episodes: int | None = None,
    ) -> None:
        self.core = _Imagination(world_model, starts, max_blocks, goal_within, metric, proprio,
                                 repeat_action, action_low, action_high, episodes)
        self.action_space = self.core.action_space
        self.observation_space = self.core.observation_space
        self._state: tuple[Tensor, Tensor, Tensor] | None = None
        self._blocks = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        z, proprio, goal, ahead = self.core.draw(self.np_random)
        self._state = (z[None], proprio[None], goal[None])
        self._blocks = 0
        return self.core.observe(*self._state)[0], {"goal_blocks": ahead}

    def step(self, action: Any):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        z, proprio, goal = self._state
        z, proprio, reward = self.core.advance(z, proprio, goal, np.asarray(action)[None])
        self._state = (z, proprio, goal)
        self._blocks += 1
        truncated = self._blocks >= self.core.max_blocks
        obs = self.core.observe(z, proprio, goal)[0]
        return obs, float(reward[0]), False, truncated, {"energy": float(-reward[0])}


class ImaginedVectorEnv(VectorEnv):
    """``num_envs`` imagined episodes stepped by one world-model call. Sub-env ``e`` draws
    like ``ImaginedEnv`` reset with ``seed + e``; a finished sub-env resets on the next step
    (Gymnasium's next-step autoreset: that step's action is ignored, its reward is 0)."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, world_model: Any, starts: Any, num_envs: int, **settings: Any) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs}")
        defaults = {"max_blocks": 10, "goal_within": None, "metric": "l2", "proprio": True,
                    "repeat_action": True, "action_low": -1.0, "action_high": 1.0,
                    "episodes": None}
        unknown = sorted(set(settings) - set(defaults))
        if unknown:
            raise TypeError(f"unknown ImaginedVectorEnv settings {unknown}")
        self.core = _Imagination(world_model, starts, **{**defaults, **settings})
        self.num_envs = int(num_envs)
        self.single_action_space = self.core.action_space
        self.single_observation_space = self.core.observation_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._rngs: list[np.random.Generator] = []
        self._blocks = np.zeros(self.num_envs, dtype=np.int64)
        self._done = np.zeros(self.num_envs, dtype=bool)
        self._z = self._proprio = self._goal = None

    def reset(self, *, seed: int | Sequence[int] | None = None,
              options: dict[str, Any] | None = None):
        seeds = self._seeds(seed)
        self._rngs = [seeding.np_random(s)[0] for s in seeds]
        drawn = [self.core.draw(rng) for rng in self._rngs]
        self._z = torch.stack([d[0] for d in drawn])
        self._proprio = torch.stack([d[1] for d in drawn])
        self._goal = torch.stack([d[2] for d in drawn])
        self._blocks[:] = 0
        self._done[:] = False
        ahead = np.array([d[3] for d in drawn])
        obs = self.core.observe(self._z, self._proprio, self._goal)
        return obs, {"goal_blocks": ahead, "_goal_blocks": np.ones(self.num_envs, bool)}

    def step(self, actions: Any):
        if self._z is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.float32)
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        restart = self._done.copy()
        live = ~restart
        if live.any():
            index = torch.from_numpy(live)
            z, proprio, reward = self.core.advance(
                self._z[index], self._proprio[index], self._goal[index], actions[live]
            )
            self._z[index], self._proprio[index] = z, proprio
            rewards[live] = reward
            self._blocks[live] += 1
        for e in np.flatnonzero(restart):
            z, proprio, goal, _ = self.core.draw(self._rngs[e])
            self._z[e], self._proprio[e], self._goal[e] = z, proprio, goal
            self._blocks[e] = 0
        truncated = live & (self._blocks >= self.core.max_blocks)
        self._done = truncated.copy()
        terminated = np.zeros(self.num_envs, dtype=bool)
        obs = self.core.observe(self._z, self._proprio, self._goal)
        return obs, rewards, terminated, truncated, {}

    def _seeds(self, seed: int | Sequence[int] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, int):
            return [seed + e for e in range(self.num_envs)]
        seeds = [int(s) for s in seed]
        if len(seeds) != self.num_envs:
            raise ValueError(f"need {self.num_envs} seeds, got {len(seeds)}")
        return seeds
