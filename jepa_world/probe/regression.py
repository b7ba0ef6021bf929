"""Regression data: held-out episodes of recorded trajectories, their frames and targets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jepa_world.data.episodes import DatasetError, EpisodeDataset
from jepa_world.models import VisionTransformer
from jepa_world.probe.features import ClipShape, extract_features, prepare_frames
from jepa_world.probe.fitting import ProbeData
from jepa_world.probe.targets import (
    CLIP_TARGETS,
    resolve_targets,
    target_names,
    target_values,
)
from jepa_world.schemas.probe import ProbeConfig
from jepa_world.training.cli import UserError


@dataclass
class RegressionSplit:
    """Episodes and frames of one side of the split, with their targets."""

    episodes: list[tuple[int, int]]  # (dataset, episode)
    frames: list[np.ndarray]  # per episode: the labelled frame indices
    targets: Tensor  # [N, M] float32

    @property
    def size(self) -> int:
        return int(self.targets.shape[0])


def open_datasets(paths: list[str]) -> list[EpisodeDataset]:
    """Open dataset folders, turning any missing / corrupt one into a one-line error."""
    try:
        return [EpisodeDataset(p) for p in paths]
    except DatasetError as exc:
        raise UserError(str(exc)) from None


def split_episodes(
    counts: list[int], val_fraction: float, seed: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Hold out whole episodes: (dataset, episode) pairs for train and val, each sorted."""
    pairs = [(d, e) for d, n in enumerate(counts) for e in range(n)]
    if len(pairs) < 2:
        raise UserError(
            f"only {len(pairs)} episode(s) to split into train and val: record more or give "
            "data.val=DIR"
        )
    if not 0 < val_fraction < 1:
        raise UserError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    n_val = min(len(pairs) - 1, max(1, round(len(pairs) * val_fraction)))
    order = np.random.default_rng(seed).permutation(len(pairs))
    val = sorted(pairs[i] for i in order[:n_val])
    train = sorted(pairs[i] for i in order[n_val:])
    return train, val


def _regression_split(
    datasets: list[EpisodeDataset],
    pairs: list[tuple[int, int]],
    targets: list[str],
    shape: ClipShape,
    stride: int,
) -> RegressionSplit:
    clip_targets = [t for t in targets if t in CLIP_TARGETS]
    if clip_targets and shape.frames < 2:
        raise UserError(
            f"target '{clip_targets[0]}' is read from the motion in a clip: give "
            "data.frames_per_clip=2 (or more)"
        )
    first = (shape.frames - 1) * shape.frame_step  # a clip ends at its labelled frame
    frames, values = [], []
    for d, e in pairs:
        arrays = datasets[d].arrays(e)
        idx = np.arange(first, int(datasets[d].lengths[e]) + 1, stride)
        frames.append(idx)
        columns = [target_values(t, arrays, shape.frame_step)[idx] for t in targets]
        values.append(np.concatenate(columns, axis=1))
    if not sum(len(f) for f in frames):
        raise UserError(
            f"no frame can end a clip of {shape.frames} frames every {shape.frame_step} steps"
        )
    y = torch.from_numpy(np.concatenate(values).astype(np.float32))
    return RegressionSplit(pairs, frames, y)


def _regression_inputs(
    datasets: list[EpisodeDataset], split: RegressionSplit, shape: ClipShape, batch: int
) -> Iterator[Tensor]:
    """Encoder inputs of a split, episode by episode: [B,3,R,R] images or [B,3,T,R,R] clips."""
    offsets = shape.frame_step * np.arange(shape.frames - 1, -1, -1)
    for (d, e), idx in zip(split.episodes, split.frames, strict=True):
        if not len(idx):
            continue
        needed = np.unique(np.concatenate([idx - o for o in offsets]))
        decoded = prepare_frames(datasets[d].frames(e, needed), shape.resolution)
        where = {int(f): i for i, f in enumerate(needed)}
        for lo in range(0, len(idx), batch):
            chunk = idx[lo : lo + batch]
            if shape.frames == 1:
                yield decoded[[where[int(f)] for f in chunk]]
            else:
                rows = [[where[int(f - o)] for o in offsets] for f in chunk]
                yield decoded[torch.tensor(rows)].permute(0, 2, 1, 3, 4)  # [B,3,T,R,R]


def open_regression(cfg: ProbeConfig) -> tuple[list[EpisodeDataset], list[EpisodeDataset]]:
    train_sets = open_datasets(cfg.data.train)
    val_sets = open_datasets(cfg.data.val)
    cfg.targets = resolve_targets(cfg.targets, train_sets + val_sets)
    return train_sets, val_sets


def regression_data(
    cfg: ProbeConfig,
    sources: tuple[list[EpisodeDataset], list[EpisodeDataset]],
    encoders: dict[str, VisionTransformer],
    shape: ClipShape,
    batch: int,
    extract: dict[str, Any],
) -> ProbeData:
    train_sets, val_sets = sources
    datasets = train_sets + val_sets
    if val_sets:
        n = len(train_sets)
        train_pairs = [(d, e) for d in range(n) for e in range(len(datasets[d]))]
        val_pairs = [(d, e) for d in range(n, len(datasets)) for e in range(len(datasets[d]))]
    else:
        train_pairs, val_pairs = split_episodes(
            [len(d) for d in datasets], cfg.data.val_fraction, cfg.data.split_seed
        )
    targets, stride = cfg.targets, cfg.data.frame_stride
    try:
        train = _regression_split(datasets, train_pairs, targets, shape, stride)
        val = _regression_split(datasets, val_pairs, targets, shape, stride)
        features = [
            extract_features(
                encoders, _regression_inputs(datasets, side, shape, batch), side.size, **extract
            )
            for side in (train, val)
        ]
    except DatasetError as exc:
        raise UserError(str(exc)) from None
    arrays = datasets[0].arrays(0)
    info = {
        "train": [str(d.root) for d in train_sets],
        "val": [str(d.root) for d in val_sets] or None,
        "train_samples": train.size,
        "val_samples": val.size,
        "train_episodes": [f"{datasets[d].root}:{e}" for d, e in train_pairs],
        "val_episodes": [f"{datasets[d].root}:{e}" for d, e in val_pairs],
    }
    names = [n for t in targets for n in target_names(t, arrays)]
    groups = np.repeat(np.arange(len(train.frames)), [len(f) for f in train.frames])
    return ProbeData(*features, train.targets, val.targets, info, names, groups)
