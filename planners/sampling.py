"""One skeleton for the sampling planners: CEM and MPPI differ only in how they refit.

Every iteration samples ``samples`` sequences around a diagonal Gaussian (the current mean is
always one of them, so a good warm start is never lost), clamps them into the action box,
scores them all with one batched rollout, remembers the best sequence ever scored, keeps the
``elites`` lowest energies and hands them to the planner's ``refit``, which returns the next
mean and std. What each planner returns (the best sequence, the mean, a drawn elite) is its
own choice, made from the ``Search`` this returns.

``proposals`` (sequences from elsewhere, e.g. a distilled policy rolled out in the world
model) take the first iteration's sample slots after the mean: the search then starts from
the better of the warm start and the proposals, and a proposal is kept if nothing beats it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

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
    initial_mean,
    lowest,
    prepare,
    randn,
    to_blocks,
)
from planners.polish import POLISH_METHODS, polish
from planners.tail import PolicyTail

# (elites [E,M,H,b,A], their energies [E,M], mean [E,H,b,A], std [E,H,b,A]) -> (mean, std)
Refit = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


@dataclass
class SamplingSettings(PlannerSettings):
    """Shared by the sampling planners. ``std_init`` is in action units (the box is
    [-1, 1]); ``std_min`` keeps the search from collapsing. ``explore``: the fraction of every
    iteration's samples drawn around the mean with the wide ``std_explore`` instead of the
    current std, so that a search started narrow around a warm start can still find a far
    better sequence. ``polish_steps``: Adam steps of size ``polish_lr`` on the best sequence
    through the differentiable world model after the last iteration (``planners.polish``),
    or Gauss-Newton steps with ``polish_method="gauss_newton"`` (l2 energy; ``polish_lr``
    unused)."""

    section: ClassVar[str] = "sampling"  # the settings' section in configs/mpc.yaml

    samples: int = 300
    elites: int = 30
    iterations: int = 30
    std_init: float = 1.0
    std_min: float = 0.05
    explore: float = 0.0
    std_explore: float = 1.0
    min_improvement: float = 0.0
    polish_steps: int = 0
    polish_lr: float = 0.02
    polish_method: str = "adam"

    def validate(self) -> None:
        super().validate()
        for name in ("samples", "elites", "iterations"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"{self.section}.{name} must be a positive integer, got {getattr(self, name)}"
                )
        if self.elites > self.samples:
            raise ValueError(
                f"{self.section}.elites ({self.elites}) exceeds {self.section}.samples "
                f"({self.samples})"
            )
        if not 0.0 <= self.explore < 1.0 or self.std_explore <= 0:
            raise ValueError(f"{self.section}.explore must be in [0, 1) and "
                             f"{self.section}.std_explore positive")
        if not 0.0 <= self.min_improvement < 1.0:
            raise ValueError(f"{self.section}.min_improvement must be in [0, 1), got "
                             f"{self.min_improvement}")
        if int(self.polish_steps) < 0 or self.polish_lr <= 0:
            raise ValueError(f"{self.section}.polish_steps must be >= 0 and "
                             f"{self.section}.polish_lr positive")
        if self.polish_method not in POLISH_METHODS:
            raise ValueError(f"{self.section}.polish_method must be one of "
                             f"{', '.join(POLISH_METHODS)}, got {self.polish_method!r}")
        if self.polish_method == "gauss_newton" and self.polish_steps and self.metric != "l2":
            raise ValueError(f"{self.section}.polish_method=gauss_newton needs energy=l2, got "
                             f"{self.metric!r}")
        if self.std_init <= 0 or self.std_min < 0:
            raise ValueError(
                f"{self.section}.std_init must be positive and {self.section}.std_min "
                "non-negative"
            )


@dataclass
class Search:
    """Where a sampling search ended: the last Gaussian, the last elites, the best sequence
    seen (``best``), the scorer (for scoring a final choice), the best energy per
    iteration (``history``) and how many iterations each environment ran (``ran``)."""

    mean: Tensor
    std: Tensor
    elites: Tensor
    elite_energy: Tensor
    best: BestTracker
    score: Scorer
    history: list[Tensor]
    started: float
    ran: Tensor

    def result(self, planner: str, params: Tensor, energy: Tensor, frameskip: int) -> PlanResult:
        """The plan of searched ``params`` [E,H,b,A] with their ``energy`` [E]."""
        info: dict[str, Any] = {
            "planner": planner,
            "iterations": len(self.history),
            "iterations_per_env": self.ran,
            "evaluations": self.score.evaluations,
            "model_s": self.score.model_s,
            "total_s": time.perf_counter() - self.started,
            "history": torch.stack(self.history),
            "final_std": self.std.mean(dim=tuple(range(1, self.std.dim()))),
        }
        actions = to_blocks(params, frameskip).contiguous()
        return PlanResult(actions=actions, energy=energy, info=info)


def search(
    world_model: WorldModelProtocol,
    z_now: Tensor,
    z_goal: Tensor,
    proprio: Tensor | None,
    init_mean: Tensor | None,
    generator: Generators,
    settings: SamplingSettings,
    refit: Refit,
    std_init: float | None = None,
    proposals: Tensor | None = None,
    tail: PolicyTail | None = None,
) -> Search:
    """Run ``settings.iterations`` sample / score / refit rounds for E environments at once
    (``std_init`` overrides the settings' first std; ``proposals`` [E,P,H,fs,A] are scored in
    the first round; ``tail`` continues every sequence before it is scored, ``planners.tail``)."""
    started = time.perf_counter()
    generators, shape, mean = prepare(world_model, z_now, z_goal, init_mean, generator, settings)
    num_envs, device = mean.shape[0], mean.device
    proposed = _proposals(proposals, num_envs, shape, settings, device)
    wide = min(int(round(settings.explore * settings.samples)), settings.samples - 1)
    score = Scorer(world_model, z_now, z_goal, proprio, settings.objective(world_model),
                   workers=settings.workers, tail=tail)
    std = torch.full_like(mean, settings.std_init if std_init is None else std_init)
    best = BestTracker(num_envs, shape, device)
    history: list[Tensor] = []
    elites = elite_energy = mean.unsqueeze(1)
    active = torch.ones(num_envs, dtype=torch.bool, device=device)
    ran = torch.zeros(num_envs, dtype=torch.long, device=device)
    for _ in range(settings.iterations):
        noise = randn(generators, num_envs, (settings.samples, *shape), device)
        spread = std.unsqueeze(1).expand_as(noise)
        if wide:
            spread = torch.cat([spread[:, :-wide], torch.full_like(spread[:, -wide:],
                                                                   settings.std_explore)], 1)
        candidates = mean.unsqueeze(1) + spread * noise
        candidates[:, 0] = mean
        if proposed is not None and not history:
            candidates[:, 1 : 1 + proposed.shape[1]] = proposed
        candidates = candidates.clamp(settings.action_low, settings.action_high)
        energy = score(candidates)
        ran += active
        previous = best.energy
        new_energy, index = lowest(energy, settings.elites)
        new_elites = gather_rows(candidates, index)
        new_mean, new_std = refit(new_elites, new_energy, mean, std)
        if active.all():
            best.update(energy, candidates)
            elite_energy, elites, mean, std = new_energy, new_elites, new_mean, new_std
        else:  # stopped environments keep their best, elites and Gaussian
            best.update(energy.masked_fill(~active.unsqueeze(1), float("inf")), candidates)
            elite_energy = _where_env(active, new_energy, elite_energy)
            elites = _where_env(active, new_elites, elites)
            mean, std = _where_env(active, new_mean, mean), _where_env(active, new_std, std)
        history.append(best.energy.clone())
        if settings.min_improvement > 0 and len(history) > 1:
            gain = previous - best.energy
            active = active & (gain > settings.min_improvement * previous.abs())
            if not active.any():
                break
    if settings.polish_steps:
        polish(best, score, int(settings.polish_steps), settings.polish_lr,
               settings.action_low, settings.action_high, settings.polish_method)
    return Search(mean, std, elites, elite_energy, best, score, history, started, ran)


def _where_env(active: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Per environment (dim 0): ``new`` where ``active``, else ``old``."""
    return torch.where(active.reshape(-1, *([1] * (new.dim() - 1))), new, old)


def _proposals(proposals: Tensor | None, num_envs: int, shape: tuple[int, ...],
               settings: SamplingSettings, device: torch.device) -> Tensor | None:
    """[E,P,H,fs,A] proposals in the search's shape [E,P,H,b,A] (block means when one action
    per block is searched; cut or padded with their last block to the horizon)."""
    if proposals is None:
        return None
    proposals = torch.as_tensor(proposals, dtype=torch.float32, device=device)
    if proposals.dim() != 5 or proposals.shape[0] != num_envs or proposals.shape[-1] != shape[-1]:
        raise ValueError(f"proposals must be [{num_envs},P,H,fs,{shape[-1]}], "
                         f"got {tuple(proposals.shape)}")
    count = proposals.shape[1]
    if not 0 < count < settings.samples:
        raise ValueError(f"{count} proposals need more samples than that "
                         f"({settings.section}.samples = {settings.samples})")
    flat = proposals.flatten(0, 1)
    fitted = initial_mean(flat, flat.shape[0], shape, settings, device)
    return fitted.reshape(num_envs, count, *shape)
