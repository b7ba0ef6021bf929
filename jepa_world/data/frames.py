"""Recorded episodes decoded once into memory: what end-to-end training samples windows from.

An encoder that trains cannot use cached latents, and decoding mp4 windows at every step would
cost more than the encoder itself on a small CPU; so every episode's frames are decoded once and
kept as uint8 (64 px: 12 KB a frame, about 1 GB for 80 000 frames).
"""

from __future__ import annotations

import torch

from jepa_world.data.episodes import EpisodeDataset
from jepa_world.data.windows import EpisodeWindows


class FrameTrajectories(EpisodeWindows):
    """Every episode decoded once: frames uint8 [T+1,H,W,3], proprio [T+1,P], actions [T,A];
    batches hold the frames under "frames"."""

    observation_key = "frames"

    def __init__(self, datasets: list[EpisodeDataset], show_progress: bool) -> None:
        from tqdm import tqdm

        super().__init__()
        total = sum(len(d) for d in datasets)
        bar = tqdm(total=total, desc="decoding", unit="ep", disable=not show_progress)
        for data in datasets:
            for ep in range(len(data)):
                self.append(torch.from_numpy(data.frames(ep)), data.arrays(ep),
                            f"{data.root}:{ep}")
                bar.update(1)
        bar.close()
