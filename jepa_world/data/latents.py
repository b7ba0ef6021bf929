"""Recorded episodes encoded once by a world model: what the predictor trains on and what
imagined environments start from."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from jepa_world.data.episodes import EpisodeDataset


class LatentTrajectories:
    """Every episode encoded once: latents [T+1,K,D], proprio [T+1,P], actions [T,A]."""

    def __init__(
        self,
        datasets: list[EpisodeDataset],
        model: Any,
        batch: int,
        show_progress: bool,
        limit: int | None = None,
    ) -> None:
        """``limit``: encode only the first ``limit`` episodes (across the datasets in order)."""
        from tqdm import tqdm

        self.latents, self.proprio, self.actions, self.names = [], [], [], []
        total = sum(len(d) for d in datasets)
        total = total if limit is None else min(total, int(limit))
        bar = tqdm(total=total, desc="encoding", unit="ep", disable=not show_progress)
        for data in datasets:
            for ep in range(len(data)):
                if len(self.latents) >= total:
                    break
                frames = torch.from_numpy(data.frames(ep))
                parts = [
                    model.encode(frames[i : i + batch].unsqueeze(0))[0]
                    for i in range(0, len(frames), batch)
                ]
                arrays = data.arrays(ep)
                self.latents.append(torch.cat(parts).cpu())
                self.proprio.append(torch.from_numpy(arrays["proprio"]).float())
                self.actions.append(torch.from_numpy(arrays["actions"]).float())
                self.names.append(f"{data.root}:{ep}")
                bar.update(1)
        bar.close()

    def __len__(self) -> int:
        return len(self.latents)

    def standardise(self, model: Any, episodes: list[int]) -> None:
        """Fit the model's per-channel latent statistics on the training episodes and apply
        them to the cache (the model's ``encode`` applies them from now on)."""
        flat = torch.cat([self.latents[e].reshape(-1, self.latents[e].shape[-1]) for e in episodes])
        mean, std = flat.mean(0), flat.std(0) + 1e-6
        model.set_latent_stats(mean.to(model.latent_mean.device), std.to(model.latent_std.device))
        self.latents = [(z - mean) / std for z in self.latents]

    def windows(self, episodes: list[int], steps: int, frameskip: int) -> np.ndarray:
        """(episode, start) pairs whose window of steps+1 frames fits."""
        span = steps * frameskip
        pairs = [(e, s) for e in episodes for s in range(len(self.actions[e]) - span + 1)]
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def batch(self, pairs: np.ndarray, steps: int, frameskip: int, device) -> dict[str, Tensor]:
        z, p, a = [], [], []
        for e, s in pairs:
            idx = s + frameskip * np.arange(steps + 1)
            z.append(self.latents[e][idx])
            p.append(self.proprio[e][idx])
            a.append(self.actions[e][s : s + steps * frameskip].reshape(steps, -1))
        return {
            "z": torch.stack(z).to(device),
            "proprio": torch.stack(p).to(device),
            "actions": torch.stack(a).to(device),
        }
