"""Cross-entropy method in representation space (the DINO-WM / LeWM / V-JEPA 2-AC planner).

Each iteration samples ``samples`` sequences around a diagonal Gaussian, scores them with one
batched world-model rollout, refits the Gaussian to the ``elites`` lowest energies (optionally
smoothed with momentum) and remembers the best sequence ever scored. The current mean is
always one of the samples, so a good warm start is never lost. Peers' protocol: 300 samples,
top 30, 30 iterations, horizon 5 (``CEMSettings`` defaults).
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
    gather_rows,
    lowest,
    make_settings,
    prepare,
    randn,
    to_blocks,
)


@dataclass
class CEMSettings(PlannerSettings):
    """``momentum_mean`` / ``momentum_std``: weight of the previous mean / std in each refit
    (0 = plain CEM). ``std_init`` is in action units (the box is [-1,1]); ``std_min`` keeps the
    search from collapsing. ``keep_best`` returns the lowest-energy sequence seen, otherwise
    the final mean."""

    samples: int = 300
    elites: int = 30
    iterations: int = 30
    std_init: float = 1.0
    std_min: float = 0.05
    momentum_mean: float = 0.0
    momentum_std: float = 0.0
    keep_best: bool = True

    def validate(self) -> None:
        super().validate()
        for name in ("samples", "elites", "iterations"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"cem.{name} must be a positive integer, got {getattr(self, name)}")
        if self.elites > self.samples:
            raise ValueError(f"cem.elites ({self.elites}) exceeds cem.samples ({self.samples})")
        if self.std_init <= 0 or self.std_min < 0:
            raise ValueError("cem.std_init must be positive and cem.std_min non-negative")
        for name in ("momentum_mean", "momentum_std"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"cem.{name} must be in [0, 1), got {getattr(self, name)}")


@torch.no_grad()
def plan(
    world_model: WorldModelProtocol,
    z_now: Tensor,
    z_goal: Tensor,
    *,
    proprio: Tensor | None = None,
    init_mean: Tensor | None = None,
    generator: Generators = None,
    settings: CEMSettings | None = None,
    **overrides: Any,
) -> PlanResult:
    """Plan for E environments at once: z_now / z_goal [E,K,D] -> actions [E,H,fs,A]."""
    started = time.perf_counter()
    cfg = make_settings(CEMSettings, settings, overrides)
    generators, shape, mean = prepare(world_model, z_now, z_goal, init_mean, generator, cfg)
    num_envs, device = mean.shape[0], mean.device
    score = Scorer(world_model, z_now, z_goal, proprio, cfg)
    std = torch.full_like(mean, cfg.std_init)
    best = BestTracker(num_envs, shape, device)
    history = []
    for _ in range(cfg.iterations):
        noise = randn(generators, num_envs, (cfg.samples, *shape), device)
        candidates = mean.unsqueeze(1) + std.unsqueeze(1) * noise
        candidates[:, 0] = mean
        candidates = candidates.clamp(cfg.action_low, cfg.action_high)
        energy = score(candidates)
        best.update(energy, candidates)
        _, index = lowest(energy, cfg.elites)
        elites = gather_rows(candidates, index)
        new_mean = elites.mean(dim=1)
        new_std = elites.std(dim=1, unbiased=False)
        mean = cfg.momentum_mean * mean + (1.0 - cfg.momentum_mean) * new_mean
        std = cfg.momentum_std * std + (1.0 - cfg.momentum_std) * new_std
        std = std.clamp_min(cfg.std_min)
        history.append(best.energy.clone())
    if cfg.keep_best:
        params, final_energy = best.params, best.energy
    else:
        params = mean
        final_energy = score(mean.unsqueeze(1))[:, 0]
    actions = to_blocks(params, int(world_model.frameskip)).contiguous()
    info = {
        "planner": "cem",
        "iterations": cfg.iterations,
        "evaluations": score.evaluations,
        "model_s": score.model_s,
        "total_s": time.perf_counter() - started,
        "history": torch.stack(history),
        "final_std": std.mean(dim=tuple(range(1, std.dim()))),
    }
    return PlanResult(actions=actions, energy=final_energy, info=info)
