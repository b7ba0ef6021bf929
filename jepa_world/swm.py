"""A jepa-world world model inside stable-worldmodel's harness (optional extra ``[swm]``).

stable-worldmodel's solvers (``CEMSolver``, ``MPPISolver``, ...) and its evaluation
(``WorldModelPolicy`` driven by ``World.evaluate``) ask a model for one thing: a cost per
candidate action sequence, ``get_cost(info_dict, action_candidates) -> [B, S]``.
:class:`SwmCost` answers it with a :class:`~jepa_world.world_model.WorldModel`: it encodes the
current frame and the goal image of each environment once per solve, rolls the S candidates
forward in latent space and scores them with the same energy ``planners.mpc`` minimises (the
model's stored planning settings, L2), so that their solver and ours optimise one objective.

Their ``info_dict`` holds every key of the environment's info as a tensor [B, S, history,
...]; the cost reads the last history entry of ``pixels`` and ``goal`` (uint8 images) and the
agent's proprioception, converted to the task's units by the task adapter
(``envs.swm_tasks``). Candidates are [B, S, H, block * A], ``block`` being the model's
frameskip (their ``PlanConfig.action_block``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from jepa_world.world_model import WorldModel
from planners.base import planning_defaults
from planners.energy import Energy

__all__ = ["SwmCost"]

_CACHE = "_jepa_world_start"  # what a solve computes once, kept in its info_dict


class SwmCost:
    """stable-worldmodel's cost protocol (``get_cost``) on a jepa-world ``WorldModel``."""

    def __init__(self, world_model: WorldModel, env: str, metric: str = "l2",
                 energy_steps: str | None = None) -> None:
        from envs.swm_tasks import swm_task_class

        self.world_model = world_model
        self.proprio_from_info = swm_task_class(env).proprio_from_info
        _, steps = planning_defaults(world_model, None, energy_steps)
        settings = SimpleNamespace(metric=metric, energy_steps=steps, step_weights=None,
                                   readout_weight=None)
        self.energy = Energy.for_model(settings, world_model)

    def parameters(self):  # their solvers read the dtype of a model's first parameter
        return self.world_model.parameters()

    @torch.inference_mode()
    def get_cost(self, info_dict: dict[str, Any], action_candidates: Tensor) -> Tensor:
        """Energy of each candidate: ``action_candidates`` [B, S, H, block * A] -> [B, S]."""
        model = self.world_model
        b, s, h, width = action_candidates.shape
        fs, a = model.frameskip, model.action_dim
        if width != fs * a:
            raise ValueError(f"candidates carry {width} values per step; the world model plans "
                             f"blocks of {fs} actions of {a} (set PlanConfig.action_block={fs})")
        if _CACHE not in info_dict:
            info_dict[_CACHE] = self._start(info_dict)
        z, proprio, goal = info_dict[_CACHE]
        actions = action_candidates.to(model.device, torch.float32).reshape(b, s, h, fs, a)
        predicted = model.rollout_many(z, actions, proprio)  # [B,S,H,K,D]
        goals = goal.repeat_interleave(s, dim=0)
        cost = self.energy(predicted.flatten(0, 1), goals).reshape(b, s)
        return cost.to(action_candidates.device, action_candidates.dtype)

    def _start(self, info_dict: dict[str, Any]) -> tuple[Tensor, Tensor | None, Tensor]:
        """Latents of the current frame and of the goal image, and the proprioception, from
        the first candidate's copy of the info (all S copies are the same)."""
        model = self.world_model
        pixels = _latest(info_dict["pixels"])
        goal = _latest(info_dict["goal"])
        proprio = None
        if model.proprio_dim:
            values = {k: _latest(v) for k, v in info_dict.items() if torch.is_tensor(v)}
            proprio = torch.as_tensor(self.proprio_from_info(values), dtype=torch.float32,
                                      device=model.device)
        return model.encode(pixels.to(model.device)), proprio, model.encode(goal.to(model.device))


def _latest(value: Any) -> Tensor:
    """[B, S, history, ...] -> [B, ...]: the first candidate's copy, the last history entry."""
    value = torch.as_tensor(value)
    return value[:, 0, -1] if value.dim() >= 3 else value[:, 0]
