"""The flat observation vector that RL agents see: [latent | proprio | goal latent].

``LatentObservation``, ``ImaginedEnv`` and ``PlannerPolicy`` share this layout, so an agent
trained in imagination acts in the real env unchanged, and the planner can label (or act on)
the very observations an agent sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class LatentLayout:
    tokens: int
    width: int
    proprio_dim: int = 0
    goal: bool = True

    @classmethod
    def for_model(cls, model: Any, proprio_dim: int = 0, goal: bool = True) -> LatentLayout:
        tokens, width = model.latent_shape
        return cls(int(tokens), int(width), int(proprio_dim), bool(goal))

    @classmethod
    def infer(cls, model: Any, size: int, goal: bool = True) -> LatentLayout:
        """The layout of a flat observation of ``size`` values for ``model``: what is left after
        the latents is proprioception, which must match the model's when it reads any."""
        tokens, width = model.latent_shape
        latents = tokens * width * (2 if goal else 1)
        proprio = int(size) - latents
        needed = int(getattr(model, "proprio_dim", 0) or 0)
        if proprio < 0 or (needed and proprio != needed):
            parts = f"{latents} latent values" + (f" + {needed} proprio" if needed else "")
            raise ValueError(
                f"a flat observation of {size} values does not fit this world model "
                f"(expected {parts}{' with the goal latent' if goal else ''})"
            )
        return cls(int(tokens), int(width), proprio, bool(goal))

    @property
    def latent_size(self) -> int:
        return self.tokens * self.width

    @property
    def size(self) -> int:
        return self.latent_size * (2 if self.goal else 1) + self.proprio_dim

    def join(self, latent: Tensor, proprio: Any = None, goal: Tensor | None = None) -> np.ndarray:
        """latent [E,K,D], proprio [E,P], goal [E,K,D] -> float32 [E, size]."""
        parts = [latent.detach().float().cpu().reshape(latent.shape[0], -1).numpy()]
        if self.proprio_dim:
            parts.append(np.asarray(proprio, dtype=np.float32).reshape(latent.shape[0], -1))
        if self.goal:
            if goal is None:
                raise ValueError("this layout holds the goal latent: pass goal")
            parts.append(goal.detach().float().cpu().reshape(goal.shape[0], -1).numpy())
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)

    def latent(self, flat: Any) -> Tensor:
        return self._slice(flat, 0, self.latent_size).reshape(-1, self.tokens, self.width)

    def proprio(self, flat: Any) -> Tensor | None:
        if not self.proprio_dim:
            return None
        return self._slice(flat, self.latent_size, self.latent_size + self.proprio_dim)

    def goal_latent(self, flat: Any) -> Tensor:
        if not self.goal:
            raise ValueError("this layout holds no goal latent")
        start = self.latent_size + self.proprio_dim
        return self._slice(flat, start, start + self.latent_size).reshape(
            -1, self.tokens, self.width
        )

    def _slice(self, flat: Any, start: int, stop: int) -> Tensor:
        array = torch.as_tensor(np.asarray(flat, dtype=np.float32))
        if array.dim() != 2 or array.shape[1] != self.size:
            raise ValueError(f"flat observations must be [E,{self.size}], got {tuple(array.shape)}")
        return array[:, start:stop]
