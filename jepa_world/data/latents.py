"""Recorded episodes encoded once by a world model: what the predictor trains on and what
imagined environments start from."""

from __future__ import annotations

from typing import Any

import torch

from jepa_world.data.episodes import EpisodeDataset
from jepa_world.data.windows import EpisodeWindows


class LatentTrajectories(EpisodeWindows):
    """Every episode encoded once: latents [T+1,K,D], proprio [T+1,P], actions [T,A]; batches
    hold them under "z"."""

    observation_key = "z"

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

        super().__init__()
        total = sum(len(d) for d in datasets)
        total = total if limit is None else min(total, int(limit))
        bar = tqdm(total=total, desc="encoding", unit="ep", disable=not show_progress)
        for data in datasets:
            for ep in range(len(data)):
                if len(self.observations) >= total:
                    break
                frames = torch.from_numpy(data.frames(ep))
                parts = [
                    model.encode(frames[i : i + batch].unsqueeze(0))[0]
                    for i in range(0, len(frames), batch)
                ]
                self.append(torch.cat(parts).cpu(), data.arrays(ep), f"{data.root}:{ep}")
                bar.update(1)
        bar.close()

    @property
    def latents(self) -> list[torch.Tensor]:
        return self.observations

    def standardise(self, model: Any, episodes: list[int]) -> None:
        """Fit the model's per-channel latent statistics on the training episodes and apply
        them to the cache (the model's ``encode`` applies them from now on)."""
        flat = torch.cat([self.latents[e].reshape(-1, self.latents[e].shape[-1]) for e in episodes])
        mean, std = flat.mean(0), flat.std(0) + 1e-6
        model.set_latent_stats(mean.to(model.latent_mean.device), std.to(model.latent_std.device))
        self.observations = [(z - mean) / std for z in self.observations]
