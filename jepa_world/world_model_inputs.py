"""Checks of what callers hand a world model, each failing in one line.

Inputs may be tensors or NumPy arrays of any floating dtype (computed in float32 on the model's
device); integers, wrong shapes and NaN / infinite values raise ValueError. A mixin of
``WorldModel``: it reads the model's shapes (``latent_shape``, ``frameskip``, ``action_dim``,
``proprio_dim``), its ``device`` and its proprio statistics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class InputChecks:
    def _as_float(self, x: Any, name: str) -> Tensor:
        x = torch.as_tensor(x)
        if not x.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} hold NaN or infinite values")
        return x.to(self.device, torch.float32)

    def _check_latents(self, z: Any, history: bool) -> Tensor:
        z = self._as_float(z, "latents")
        k, d = self.latent_shape
        ok = z.dim() == (4 if history else 3) and tuple(z.shape[-2:]) == (k, d)
        if not ok:
            expected = f"[B,T,{k},{d}]" if history else f"[B,{k},{d}]"
            raise ValueError(f"latents must be {expected}, got {tuple(z.shape)}")
        return z

    def _check_actions(self, actions: Any, b: int, steps: int | None) -> Tensor:
        actions = self._as_float(actions, "actions")
        fs, a = self.frameskip, self.action_dim
        expected = (b, fs, a) if steps is None else (b, steps, fs, a)
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions must have shape {list(expected)}, got {list(actions.shape)}")
        return actions

    def _check_proprio(self, proprio: Tensor | None, b: int, steps: int | None) -> Tensor | None:
        p = self.proprio_dim
        if p == 0:
            if proprio is not None:
                raise ValueError("this world model takes no proprioception; pass proprio=None")
            return None
        if proprio is None:
            raise ValueError(f"this world model needs proprio of shape [B,{p}]")
        proprio = self._as_float(proprio, "proprio")
        expected = (b, p) if steps is None else (b, steps, p)
        if tuple(proprio.shape) != expected:
            raise ValueError(f"proprio must have shape {list(expected)}, got {list(proprio.shape)}")
        return (proprio - self.proprio_mean) / self.proprio_std

    def _proprio_in_env_units(self, p: Tensor) -> Tensor:
        """The predictor's normalised proprio back in the env's units (float32)."""
        return p.float() * self.proprio_std + self.proprio_mean

    def _check_action_blocks(self, actions: Any, b: int) -> Tensor:
        """[B,H,fs,A] (or [B,H,A] when frameskip is 1) -> [B,H,fs*A], checked."""
        actions = self._as_float(actions, "actions")
        if actions.dim() == 3 and self.frameskip == 1:
            actions = actions.unsqueeze(2)
        if actions.dim() != 4:
            raise ValueError(
                f"actions must be [B,H,{self.frameskip},{self.action_dim}], "
                f"got {tuple(actions.shape)}"
            )
        horizon = actions.shape[1]
        if horizon == 0:
            raise ValueError("actions hold no action block (horizon 0): give at least one")
        return self._check_actions(actions, b, horizon).flatten(2)
