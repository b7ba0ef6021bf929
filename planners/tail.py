"""A policy that finishes every scored sequence: a look past a short planning horizon.

A sampling planner judges a sequence of ``horizon`` blocks by the energy of the latents it
predicts. With a short horizon that judgement is greedy: far from the goal the latent distance
need not fall along the way there, so the planner takes the move that looks closest now. With
a ``PolicyTail`` a goal-conditioned policy (a distilled student, ``jepa_world.rl.student``)
acts ``blocks`` more blocks inside the world model after each candidate, and the energy covers
those blocks too: a candidate is judged by where it leads once the policy takes over. Only the
planned blocks are executed; the policy never acts in the env.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from planners.energy import Energy

# (latent [B,K,D], proprio [B,P] in env units or None, goal latent [B,K,D]) -> actions [B,fs,A]
GoalPolicy = Callable[[Tensor, Tensor | None, Tensor], Tensor]


@dataclass(frozen=True)
class PolicyTail:
    act: GoalPolicy
    blocks: int

    def __post_init__(self) -> None:
        if isinstance(self.blocks, bool) or not isinstance(self.blocks, int) or self.blocks < 1:
            raise ValueError(f"a policy tail needs blocks >= 1, got {self.blocks!r}")

    def check_objective(self, objective: Energy) -> None:
        """The tail's blocks are scored with the planned ones, so per-block weights (one per
        planned block) cannot apply."""
        if objective.steps == "all" and objective.step_weights is not None:
            raise ValueError("a policy tail scores more blocks than the horizon: it needs "
                             "step_weights=null (uniform) or energy_steps=final")
