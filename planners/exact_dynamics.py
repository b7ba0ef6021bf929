"""Exact dynamics, learned energy: is a world model's latent a good planning cost?

The planner searches the true simulator (``planners.oracle``), but scores every simulated state
the way a learned world model would: the state is rendered, encoded by the model and compared
with the encoded goal image by the planners' latent distance. With the dynamics taken out of
the question, the success rate says how good the latent is as a cost; next to the oracle's own
cost (the task's state error) it bounds what better dynamics alone could give. A diagnostic:
like the oracle it reads simulator states, so its rows are never a planning result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from planners.energy import latent_distance
from planners.oracle import OracleModel


class LearnedEnergyOracle(OracleModel):
    """The oracle's rollouts with ``world_model``'s energy on rendered states."""

    def __init__(self, task: Any, world_model: Any, frameskip: int = 5,
                 threads: int | str = 0) -> None:
        env = getattr(task, "unwrapped", task)
        super().__init__(env.model, env.frame_skip, env.oracle_cost, frameskip, threads)
        self.task, self.world_model = env, world_model

    @torch.no_grad()
    def _latents(self, states: Tensor) -> Tensor:
        """states [...,1,S] -> the world model's latents of their renders [...,K,D]."""
        qpos = states[..., 0, : self.nq].reshape(-1, self.nq).cpu().numpy()
        frames = np.stack([self.task.render_state(q) for q in qpos])
        latents = self.world_model.encode(torch.from_numpy(frames)).float().cpu()
        return latents.reshape(*states.shape[:-2], *latents.shape[-2:])

    def distance(self, z: Tensor, z_goal: Tensor, metric: str = "l2") -> Tensor:
        """[B,...,1,S] against goal states [B or 1,1,S] -> [B,...]."""
        goal = self._latents(z_goal)
        while goal.dim() < z.dim():
            goal = goal.unsqueeze(1)
        return latent_distance(self._latents(z), goal, metric).double()


__all__ = ["LearnedEnergyOracle"]
