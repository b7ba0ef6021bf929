"""Actors of the evaluation loop: one interface for the planner, the oracle and random actions.

A policy acts for a batch of episodes stepped in lockstep::

    policy.reset(tasks, observations, infos, seeds)     # a new batch of episodes
    block = policy.act(tasks, observations, steps_left)  # [E, k, A]: the next k env-step actions

The episode runner (planners/episodes.py) never asks what kind of policy it has. Only
:class:`OraclePolicy` reads ``tasks`` (the simulator state and the goal state, which makes it
an upper bound); the others see observations only: pixels, proprioception and the goal image.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from planners.base import PlannerSettings, PlanResult, shift_plan
from planners.correction import OffsetCorrection


@dataclass
class PolicyStats:
    """Seconds spent per stage across a run, and one latency per planner call."""

    encode_s: float = 0.0
    planner_s: float = 0.0
    model_s: float = 0.0
    replans: int = 0
    call_ms: list[float] = field(default_factory=list)


class RandomPolicy:
    """Uniform random actions in the action box, one generator per episode (a lower bound)."""

    kind = "random"

    def __init__(self, action_low: np.ndarray, action_high: np.ndarray, frameskip: int) -> None:
        self.low, self.high = np.asarray(action_low), np.asarray(action_high)
        self.frameskip = int(frameskip)
        self.stats = PolicyStats()
        self._rngs: list[np.random.Generator] = []

    def reset(self, tasks: list, observations: list, infos: list, seeds: list[int]) -> None:
        self._rngs = [np.random.default_rng(seed) for seed in seeds]

    def act(self, tasks: list, observations: list, steps_left: int) -> np.ndarray:
        todo = min(self.frameskip, steps_left)
        return np.stack([rng.uniform(self.low, self.high, (todo, len(self.low)))
                         for rng in self._rngs])

    def episode_info(self, e: int) -> dict[str, Any]:
        return {"replans": 0, "final_energy": None, "plan_ms": []}

    def close(self) -> None:
        pass


class PlannerPolicy:
    """Receding-horizon planning with a world model: plan ``horizon`` blocks, return the first
    (``frameskip`` env steps), and warm-start the next plan from the shifted one.

    Each episode draws its planner noise from its own generator seeded by its seed, so results
    do not depend on how many episodes share a batch.
    """

    kind = "learned"

    def __init__(
        self,
        model: Any,
        plan_fn: Callable[..., PlanResult],
        settings: PlannerSettings,
        *,
        warm_start: bool = True,
        shrink_horizon: bool = False,
        correction_gain: float | None = None,
    ) -> None:
        self.model, self.plan_fn, self.settings = model, plan_fn, settings
        self.frameskip = int(model.frameskip)
        self.warm_start, self.shrink_horizon = bool(warm_start), bool(shrink_horizon)
        self.correction_gain = correction_gain
        self.uses_proprio = int(getattr(model, "proprio_dim", 0) or 0) > 0
        self.stats = PolicyStats()
        self._reset_episode_state(0)

    def _reset_episode_state(self, count: int) -> None:
        self._warm: Tensor | None = None
        self._goal: Tensor | None = None
        self._generators: list[torch.Generator] = []
        self._correction = (
            OffsetCorrection(self.correction_gain) if self.correction_gain is not None else None
        )
        self._plan_ms: list[list[float]] = [[] for _ in range(count)]
        self._energy: list[float | None] = [None] * count

    # ------------------------------------------------------------------ what the planner sees
    @torch.no_grad()
    def encode_goal(self, tasks: list, infos: list) -> Tensor:
        return self.model.encode(torch.from_numpy(np.stack([i["goal_pixels"] for i in infos])))

    @torch.no_grad()
    def encode_now(self, tasks: list, observations: list) -> Tensor:
        return self.model.encode(torch.from_numpy(np.stack([o["pixels"] for o in observations])))

    def proprio(self, observations: list) -> Tensor | None:
        if not self.uses_proprio:
            return None
        return torch.from_numpy(np.stack([o["proprio"] for o in observations]))

    # ------------------------------------------------------------------ policy interface
    def reset(self, tasks: list, observations: list, infos: list, seeds: list[int]) -> None:
        self._reset_episode_state(len(seeds))
        self._generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        started = time.perf_counter()
        self._goal = self.encode_goal(tasks, infos)
        self.stats.encode_s += time.perf_counter() - started

    def act(self, tasks: list, observations: list, steps_left: int) -> np.ndarray:
        started = time.perf_counter()
        z_now = self.encode_now(tasks, observations)
        proprio = self.proprio(observations)
        encoded = time.perf_counter()
        goal = self._goal if self._correction is None else self._correction.goal(self._goal, z_now)
        result = self.plan_fn(
            self.model,
            z_now,
            goal,
            proprio=proprio,
            init_mean=self._warm,
            generator=self._generators,
            settings=self._settings_for(steps_left),
        )
        if self._correction is not None:
            self._correction.expect(self.model, z_now, result.actions[:, :1], proprio)
        block = result.actions[:, 0].detach().cpu().numpy()
        done = time.perf_counter()
        self.stats.encode_s += encoded - started
        self.stats.planner_s += done - encoded
        self.stats.model_s += float(result.info.get("model_s", 0.0))
        self.stats.replans += 1
        self.stats.call_ms.append(1000.0 * (done - started))
        for e in range(len(self._plan_ms)):
            self._plan_ms[e].append(round(1000.0 * (done - started), 3))
            self._energy[e] = float(result.energy[e])
        if self.warm_start:
            self._warm = shift_plan(result.actions.detach(), 1)
        return block[:, : min(self.frameskip, steps_left)]

    def episode_info(self, e: int) -> dict[str, Any]:
        return {
            "replans": len(self._plan_ms[e]),
            "final_energy": self._energy[e],
            "plan_ms": self._plan_ms[e],
        }

    def close(self) -> None:
        """Release what the model holds (the oracle's rollout threads)."""
        if hasattr(self.model, "close"):
            self.model.close()

    def _settings_for(self, steps_left: int) -> PlannerSettings:
        """The settings, with the horizon cut to the blocks that still fit into the budget when
        ``shrink_horizon`` is set (the last step weights are kept)."""
        settings = self.settings
        blocks_left = -(-steps_left // self.frameskip)
        if not self.shrink_horizon or blocks_left >= settings.horizon:
            return settings
        weights = settings.step_weights
        return dataclasses.replace(
            settings,
            horizon=blocks_left,
            step_weights=None if weights is None else tuple(weights[-blocks_left:]),
        )


class OraclePolicy(PlannerPolicy):
    """The same planner searching the true simulator from the true state towards the goal
    state (``planners.oracle.OracleModel``): an upper bound, not a learned result."""

    kind = "oracle"

    def encode_goal(self, tasks: list, infos: list) -> Tensor:
        return self.model.encode_state(np.stack([i["goal_qpos"] for i in infos]))

    def encode_now(self, tasks: list, observations: list) -> Tensor:
        states = [task.get_state() for task in tasks]
        return self.model.encode_state(
            np.stack([s[0] for s in states]), np.stack([s[1] for s in states])
        )
