"""Data readers: recorded trajectory datasets (episodes) and video corpora (video)."""

from jepa_world.data.episodes import EpisodeDataset, WindowDataset

__all__ = ["EpisodeDataset", "WindowDataset"]
