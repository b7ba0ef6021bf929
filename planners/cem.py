"""Cross-entropy method in representation space (the DINO-WM / LeWM / V-JEPA 2-AC planner).

The sampling skeleton (``planners.sampling``) with CEM's refit: the Gaussian is refitted to the
``elites`` lowest energies (optionally smoothed with momentum). Peers' protocol: 300 samples,
top 30, 30 iterations, horizon 5 (``CEMSettings`` defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from planners.base import Generators, PlanResult, WorldModelProtocol, make_settings
from planners.sampling import SamplingSettings, search
from planners.tail import PolicyTail


@dataclass
class CEMSettings(SamplingSettings):
    """``momentum_mean`` / ``momentum_std``: weight of the previous mean / std in each refit
    (0 = plain CEM). ``keep_best`` returns the lowest-energy sequence seen, otherwise the
    final mean."""

    section: ClassVar[str] = "cem"

    momentum_mean: float = 0.0
    momentum_std: float = 0.0
    keep_best: bool = True

    def validate(self) -> None:
        super().validate()
        for name in ("momentum_mean", "momentum_std"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"cem.{name} must be in [0, 1), got {getattr(self, name)}")


def refit(cfg: CEMSettings, elites: Tensor, elite_energy: Tensor, mean: Tensor,
          std: Tensor) -> tuple[Tensor, Tensor]:
    """The elites' mean and std, each smoothed with its momentum."""
    new_mean = elites.mean(dim=1)
    new_std = elites.std(dim=1, unbiased=False)
    mean = cfg.momentum_mean * mean + (1.0 - cfg.momentum_mean) * new_mean
    std = cfg.momentum_std * std + (1.0 - cfg.momentum_std) * new_std
    return mean, std.clamp_min(cfg.std_min)


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
    proposals: Tensor | None = None,
    tail: PolicyTail | None = None,
    **overrides: Any,
) -> PlanResult:
    """Plan for E environments at once: z_now / z_goal [E,K,D] -> actions [E,H,fs,A];
    ``proposals`` [E,P,H,fs,A]: sequences to score in the first iteration; ``tail``: a policy
    that continues every sequence before it is scored (``planners.tail``)."""
    cfg = make_settings(CEMSettings, settings, overrides)
    found = search(world_model, z_now, z_goal, proprio, init_mean, generator, cfg,
                   lambda *state: refit(cfg, *state), proposals=proposals, tail=tail)
    if cfg.keep_best:
        params, energy = found.best.params, found.best.energy
    else:
        params, energy = found.mean, found.score(found.mean.unsqueeze(1))[:, 0]
    return found.result("cem", params, energy, int(world_model.frameskip))
