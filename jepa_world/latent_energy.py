"""The distance between latents that planning minimises, owned by the world model's side.

``WorldModel.energy`` and the planners' ``Energy`` both score with ``latent_distance``; it lives
here so that the world model never imports the planners that use it.
"""

from __future__ import annotations

from torch import Tensor

METRICS = ("l1", "l2")


def latent_distance(z: Tensor, goal: Tensor, metric: str) -> Tensor:
    """Mean absolute (l1) or mean squared (l2) difference over tokens and channels:
    z [...,K,D] against a broadcastable goal -> [...]."""
    diff = z - goal
    if metric == "l1":
        return diff.abs().mean(dim=(-2, -1))
    if metric == "l2":
        return diff.pow(2).mean(dim=(-2, -1))
    raise ValueError(f"unknown energy metric {metric!r} (known: {', '.join(METRICS)})")
