"""Training windows over whole episodes held in memory: what the predictor trainers sample.

A window is an (episode, start) pair: ``steps + 1`` observations ``frameskip`` env steps apart,
the proprio at the same instants and the ``steps`` action blocks between them (each block's
actions concatenated). Subclasses fill ``observations`` (encoded latents, or decoded frames for
end-to-end training) and name the batch key they are given under.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class EpisodeWindows:
    """Per episode: observations [T+1,...], proprio [T+1,P], actions [T,A]."""

    observation_key = "observations"

    def __init__(self) -> None:
        self.observations: list[Tensor] = []
        self.proprio: list[Tensor] = []
        self.actions: list[Tensor] = []
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.observations)

    def append(self, observations: Tensor, arrays: dict[str, np.ndarray], name: str) -> None:
        """One episode: its observations and the recorded arrays of ``EpisodeDataset.arrays``."""
        self.observations.append(observations)
        self.proprio.append(torch.from_numpy(arrays["proprio"]).float())
        self.actions.append(torch.from_numpy(arrays["actions"]).float())
        self.names.append(name)

    def windows(self, episodes: list[int], steps: int, frameskip: int) -> np.ndarray:
        """(episode, start) pairs whose window of steps+1 observations fits."""
        span = steps * frameskip
        pairs = [(e, s) for e in episodes for s in range(len(self.actions[e]) - span + 1)]
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def batch(self, pairs: np.ndarray, steps: int, frameskip: int, device) -> dict[str, Tensor]:
        obs, p, a = [], [], []
        for e, s in pairs:
            idx = s + frameskip * np.arange(steps + 1)
            obs.append(self.observations[e][idx])
            p.append(self.proprio[e][idx])
            a.append(self.actions[e][s : s + steps * frameskip].reshape(steps, -1))
        return {
            self.observation_key: torch.stack(obs).to(device),
            "proprio": torch.stack(p).to(device),
            "actions": torch.stack(a).to(device),
        }
