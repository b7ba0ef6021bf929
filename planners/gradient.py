"""Gradient-based planning: Adam on the action sequence through the differentiable world model.

Actions are free parameters squashed into the action box (``squash="tanh"``: a = mid +
half * tanh(u), smooth everywhere; ``"clamp"``: u is projected back into the box after each
step). Restart 0 starts from the warm start (or the middle of the box), the other
``restarts - 1`` from uniform random sequences; all restarts of all environments are optimised
in one batch, and the lowest-energy sequence seen is returned. The loss is the sum of the
per-sequence energies, so every sequence gets exactly its own gradient (batched == unbatched).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from planners.base import (
    BestTracker,
    Generators,
    PlannerSettings,
    PlanResult,
    Scorer,
    WorldModelProtocol,
    make_settings,
    prepare,
    rand,
    to_blocks,
)
from planners.polish import descend

SQUASHES = ("tanh", "clamp")
_EDGE = 1e-4  # keeps atanh finite for warm starts on the box boundary


@dataclass
class GradientSettings(PlannerSettings):
    """``lr``/``steps``: Adam on the unconstrained parameters; ``restarts``: parallel starts
    (restart 0 is the warm start); ``init_spread``: the random starts are uniform in
    ``init_spread`` times the box."""

    lr: float = 0.1
    steps: int = 30
    restarts: int = 4
    squash: str = "tanh"
    init_spread: float = 1.0

    def validate(self) -> None:
        super().validate()
        for name in ("steps", "restarts"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"gradient.{name} must be a positive integer, got {getattr(self, name)}"
                )
        if self.lr <= 0:
            raise ValueError(f"gradient.lr must be positive, got {self.lr}")
        if self.squash not in SQUASHES:
            raise ValueError(f"gradient.squash must be one of {SQUASHES}, got {self.squash!r}")
        if not 0.0 <= self.init_spread <= 1.0:
            raise ValueError(f"gradient.init_spread must be in [0, 1], got {self.init_spread}")


def plan(
    world_model: WorldModelProtocol,
    z_now: Tensor,
    z_goal: Tensor,
    *,
    proprio: Tensor | None = None,
    init_mean: Tensor | None = None,
    generator: Generators = None,
    settings: GradientSettings | None = None,
    **overrides: Any,
) -> PlanResult:
    """Plan for E environments at once: z_now / z_goal [E,K,D] -> actions [E,H,fs,A]."""
    started = time.perf_counter()
    cfg = make_settings(GradientSettings, settings, overrides)
    generators, shape, mean = prepare(world_model, z_now, z_goal, init_mean, generator, cfg)
    num_envs, device = mean.shape[0], mean.device
    mid = 0.5 * (cfg.action_high + cfg.action_low)
    half = 0.5 * (cfg.action_high - cfg.action_low)

    starts = [mean.unsqueeze(1)]
    if cfg.restarts > 1:
        uniform = rand(generators, num_envs, (cfg.restarts - 1, *shape), device)
        starts.append(mid + half * cfg.init_spread * (2.0 * uniform - 1.0))
    start = torch.cat(starts, dim=1)  # [E,R,H,b,A]

    def squash(u: Tensor) -> Tensor:
        if cfg.squash == "tanh":
            return mid + half * torch.tanh(u)
        return u

    if cfg.squash == "tanh":
        unit = ((start - mid) / half).clamp(-1.0 + _EDGE, 1.0 - _EDGE)
        params = torch.atanh(unit)
    else:
        params = start.clone()
    params = params.detach().requires_grad_(True)

    with torch.no_grad():
        score = Scorer(world_model, z_now.detach(), z_goal.detach(), proprio,
                       cfg.objective(world_model))
    best = BestTracker(num_envs, shape, device)
    history: list[Tensor] = []
    box = (cfg.action_low, cfg.action_high) if cfg.squash == "clamp" else None
    descend(score, params, best, cfg.steps, cfg.lr, squash, box, history)
    result = to_blocks(best.params, int(world_model.frameskip)).contiguous()
    info = {
        "planner": "gradient",
        "iterations": cfg.steps,
        "evaluations": score.evaluations,
        "model_s": score.model_s,
        "total_s": time.perf_counter() - started,
        "history": torch.stack(history),
    }
    return PlanResult(actions=result, energy=best.energy, info=info)
