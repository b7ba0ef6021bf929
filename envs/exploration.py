"""Exploration policies that generate the actions of recorded datasets.

A world model can only learn the dynamics its data shows: ``random`` (i.i.d. uniform actions,
what the ``offset`` goal protocol uses) covers the action box but moves the arm little, while
``noisy`` (temporally correlated Gaussian noise) also produces long sweeps across the workspace.
"""

from __future__ import annotations

from typing import Any

import numpy as np

POLICIES = ("random", "noisy")


def check_settings(smoothing: float, scale: float) -> None:
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"action scale must be in (0, 1], got {scale}")


class ExplorationPolicy:
    """Stateful action generator; ``reset`` at the start of every episode."""

    def __init__(
        self, kind: str, action_dim: int, smoothing: float = 0.8, scale: float = 1.0
    ) -> None:
        if kind not in POLICIES:
            raise ValueError(f"unknown policy {kind!r} (known: {', '.join(POLICIES)})")
        check_settings(smoothing, scale)
        self.kind, self.action_dim = kind, action_dim
        self.smoothing, self.scale = smoothing, scale
        self._previous = np.zeros(action_dim)

    def reset(self, rng: np.random.Generator) -> None:
        self._previous = rng.uniform(-1.0, 1.0, self.action_dim) * self.scale

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "random":
            action = rng.uniform(-1.0, 1.0, self.action_dim) * self.scale
        else:
            # AR(1) noise with unit stationary variance, then clipped to the action box.
            rho = self.smoothing
            noise = rng.normal(0.0, 1.0, self.action_dim)
            action = rho * self._previous + np.sqrt(1.0 - rho**2) * noise * self.scale
            action = np.clip(action, -1.0, 1.0)
        self._previous = action
        return action.astype(np.float32)


def make_exploration_policy(task: Any, kind: str, smoothing: float, scale: float) -> Any:
    """A generic policy (``POLICIES``) or one of the task's own ``recording_policies``."""
    if kind in POLICIES:
        return ExplorationPolicy(kind, int(task.action_space.shape[0]), smoothing, scale)
    own = tuple(getattr(task, "recording_policies", ()))
    if kind in own:
        check_settings(smoothing, scale)
        return task.make_recording_policy(kind, smoothing, scale)
    raise ValueError(f"unknown policy {kind!r} (known: {', '.join(POLICIES + own)})")
