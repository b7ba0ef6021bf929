"""The planners' objective as one small object: how far predicted latents end from the goal.

Planners score action sequences by rolling a world model forward and asking an ``Energy``
how far the predictions are from the goal latent; world models only predict. The object
holds the three choices that define the objective (distance metric, which predicted blocks
count, their weights), so that the planners, the scorer and what is trained to minimise the
same objective (``jepa_world.rl.amortized``) cannot disagree about it.

A world model whose states are not latents brings its own distance (the simulator oracle
compares joint angles modulo 2*pi): ``Energy.for_model`` picks up a ``distance(z, goal,
metric)`` method when the model has one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from jepa_world.latent_energy import METRICS, latent_distance

ENERGY_STEPS = ("final", "all")

Distance = Callable[[Tensor, Tensor, str], Tensor]
Term = Callable[[Tensor, Tensor], Tensor]  # (z [...,K,D], goal broadcastable) -> [...]


@dataclass(frozen=True)
class Energy:
    """``steps="final"`` scores the last predicted block only (the V-JEPA 2-AC / DINO-WM
    protocol); ``"all"`` takes the mean over the predicted blocks weighted by
    ``step_weights`` (one non-negative weight per block, normalised; uniform when None)."""

    metric: str = "l2"
    steps: str = "all"
    step_weights: tuple[float, ...] | None = None
    distance: Distance = latent_distance
    extra: Term | None = None  # added to every block's distance (a state readout's term)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown energy metric {self.metric!r} (known: {', '.join(METRICS)})")
        if self.steps not in ENERGY_STEPS:
            raise ValueError(f"energy_steps must be 'final' or 'all', got {self.steps!r}")
        if self.step_weights is not None:
            weights = tuple(float(w) for w in self.step_weights)
            if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(
                    f"step_weights must be finite, non-negative, with a positive sum: {weights}"
                )
            object.__setattr__(self, "step_weights", weights)

    @classmethod
    def for_model(cls, settings: Any, world_model: Any = None) -> Energy:
        """The objective a planner's settings (``metric``, ``energy_steps``, ``step_weights``,
        ``readout_weight``) describe, with the world model's own distance if it defines one
        and its state readout's term (``jepa_world.readout``) if it carries one."""
        distance = getattr(world_model, "distance", None) or latent_distance
        extra = readout_term(getattr(settings, "readout_weight", None), world_model)
        return cls(settings.metric, settings.energy_steps, settings.step_weights, distance, extra)

    def block_distance(self, z: Tensor, goal: Tensor) -> Tensor:
        """z [...,K,D] against a broadcastable goal -> [...]: the distance plus the extra term."""
        value = self.distance(z, goal, self.metric)
        return value if self.extra is None else value + self.extra(z, goal)

    def per_block(self, predicted: Tensor, goal: Tensor) -> Tensor:
        """predicted [B,H,K,D], goal [B or 1,K,D] -> distance of every block [B,H]."""
        return self.block_distance(predicted, goal.unsqueeze(1))

    def residuals(self, predicted: Tensor, goal: Tensor) -> Tensor:
        """predicted [B,H,K,D], goal [B or 1,K,D] -> r [B,M] whose squares sum to the energy
        without the ``extra`` term: the least-squares form a Gauss-Newton step needs. Only
        the l2 metric on latents has it."""
        if self.metric != "l2" or self.distance is not latent_distance:
            raise ValueError("a Gauss-Newton polish needs the l2 energy on latents (energy=l2, "
                             f"a learned world model), got metric {self.metric!r}"
                             + ("" if self.distance is latent_distance else
                                " with the model's own distance"))
        diff = predicted - goal.unsqueeze(1)  # [B,H,K,D]
        horizon, size = diff.shape[1], diff.shape[-2] * diff.shape[-1]
        if self.steps == "final":
            weights = torch.zeros(horizon, dtype=diff.dtype, device=diff.device)
            weights[-1] = 1.0
        else:
            weights = self.block_weights(diff)
        scale = (weights / size).sqrt().reshape(1, horizon, 1, 1)
        return (diff * scale).flatten(1)

    def block_weights(self, per_block: Tensor) -> Tensor:
        """The normalised weights [H] of the blocks of ``per_block`` [B,H,...] that
        ``steps="all"`` averages over (uniform when ``step_weights`` is None)."""
        horizon = per_block.shape[1]
        raw = self.step_weights or (1.0,) * horizon
        if len(raw) != horizon:
            raise ValueError(f"step_weights has {len(raw)} values for {horizon} predicted blocks")
        weights = torch.tensor(raw, dtype=per_block.dtype, device=per_block.device)
        return weights / weights.sum()

    def __call__(self, predicted: Tensor, goal: Tensor) -> Tensor:
        """predicted [B,H,K,D], goal [B or 1,K,D] -> energy [B] (differentiable)."""
        if self.steps == "final":
            return self.block_distance(predicted[:, -1], goal)
        per_block = self.per_block(predicted, goal)
        return (per_block * self.block_weights(per_block)).sum(dim=-1)


def readout_term(weight: float | None, world_model: Any) -> Term | None:
    """The state readout's energy term at ``weight`` (None: the readout's own weight; 0: off),
    or None when there is no term. A positive weight needs a model that carries a readout."""
    readout = getattr(world_model, "readout", None)
    if weight is not None and (not math.isfinite(weight) or weight < 0):
        raise ValueError(f"readout_weight must be finite and >= 0, got {weight}")
    if readout is None:
        if weight and world_model is not None:
            raise ValueError("readout_weight needs a world model with a state readout "
                             "(python -m jepa_world.readout --install)")
        return None
    weight = readout.config.weight if weight is None else float(weight)
    if weight == 0:
        return None
    return lambda z, goal: readout.term(z, goal, weight)
