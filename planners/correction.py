"""Offset-free MPC: remove a learned model's steady error with what the last block showed.

After a block is executed the planner sees where the latent really went (``z_now``) and can
compare it with where the world model said it would go (``expected``). Treating that residual
as a constant disturbance on every future prediction (the classic output-disturbance model of
offset-free MPC) is the same as moving the goal by minus the residual. A model that is
consistently off near the goal, e.g. one that believes a small action moves the arm a little
further than it does, otherwise parks the arm a fixed distance from the goal; the correction
makes the closed loop remove that offset. It needs no knowledge of the task, only the model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from planners.base import WorldModelProtocol


class OffsetCorrection:
    """Per-episode state: call ``goal`` before each plan and ``expect`` after it."""

    def __init__(self, gain: float = 1.0) -> None:
        try:
            value = float(gain)
        except (TypeError, ValueError):
            value = float("nan")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"correction_gain must be in [0, 1], got {gain!r}")
        self.gain = value
        self.expected: Tensor | None = None

    def reset(self) -> None:
        self.expected = None

    def goal(self, z_goal: Tensor, z_now: Tensor) -> Tensor:
        """The goal to plan towards: ``z_goal - gain * (z_now - expected)`` once a prediction
        of the current latent exists, else ``z_goal``."""
        if self.expected is None:
            return z_goal
        residual = z_now.to(self.expected.device) - self.expected
        return z_goal.to(self.expected.device) - self.gain * residual

    @torch.no_grad()
    def expect(
        self,
        world_model: WorldModelProtocol,
        z_now: Tensor,
        first_block: Tensor,
        proprio: Tensor | None = None,
    ) -> Tensor:
        """Remember the model's prediction of the latent after ``first_block`` [E,1,fs,A],
        the block about to be executed."""
        device = torch.device(world_model.device)
        predicted = world_model.rollout(
            z_now.to(device),
            first_block.to(device),
            None if proprio is None else torch.as_tensor(proprio).to(device),
        )
        self.expected = predicted[:, 0].detach()
        return self.expected
