"""What a regression probe predicts: per-frame arrays a dataset recorded, or clip targets."""

from __future__ import annotations

import numpy as np

from jepa_world.data.episodes import EpisodeDataset
from jepa_world.training.cli import UserError

# Targets computed from a clip rather than read at one frame. ``action`` is inverse dynamics:
# the mean action taken between the clip's last two frames.
CLIP_TARGETS = ("action",)


def frame_arrays(data: EpisodeDataset) -> list[str]:
    """What a dataset can be probed on: proprio, the task's state arrays, the clip targets."""
    return ["proprio", *data.state_keys, *CLIP_TARGETS]


def target_values(name: str, arrays: dict[str, np.ndarray], frame_step: int = 1) -> np.ndarray:
    """One target group as [T+1, k] (state arrays of any shape are flattened per frame).

    Row t of ``action`` averages the ``frame_step`` actions that led from frame t - frame_step
    to frame t; rows before ``frame_step`` have no such actions and are NaN.
    """
    if name == "action":
        actions = np.asarray(arrays["actions"], np.float64)
        steps, dim = actions.shape
        values = np.full((steps + 1, dim), np.nan)
        sums = np.concatenate([np.zeros((1, dim)), np.cumsum(actions, axis=0)])
        values[frame_step:] = (sums[frame_step:] - sums[:-frame_step]) / frame_step
        return values
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
