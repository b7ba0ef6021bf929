"""What a regression probe predicts: per-frame arrays a dataset recorded."""

from __future__ import annotations

import numpy as np

from jepa_world.data.episodes import EpisodeDataset
from jepa_world.training.cli import UserError


def frame_arrays(data: EpisodeDataset) -> list[str]:
    """Per-frame arrays a dataset can be probed on: proprio and the task's state arrays."""
    return ["proprio", *data.state_keys]


def target_values(name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """One target group as [T+1, k] (state arrays of any shape are flattened per frame)."""
    values = np.asarray(arrays[name])
    return values.reshape(len(values), -1)


def target_names(name: str, arrays: dict[str, np.ndarray]) -> list[str]:
    """Column names of one target group (e.g. fingertip -> fingertip0, fingertip1)."""
    return [f"{name}{j}" for j in range(target_values(name, arrays).shape[1])]


def resolve_targets(names: list[str] | None, datasets: list[EpisodeDataset]) -> list[str]:
    """The targets to probe: the given names, or the task's defaults recorded in the data."""
    if names is None:
        names = datasets[0].probe_targets
    if not names:
        raise UserError("targets is empty: give targets=[NAME,...] (a dataset's state arrays)")
    for data in datasets:
        known = frame_arrays(data)
        for name in names:
            if name not in known:
                raise UserError(
                    f"unknown target '{name}' for {data.root} (recorded in {data.env_id}; "
                    f"known: {', '.join(known)})"
                )
    return list(names)
