"""Low-shot frozen evaluation: the probe trained on a fraction of the labels, scored on all of
the held-out samples, over several random subsets (V-JEPA reports 5 %, 10 % and 50 %)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jepa_world.probe.fitting import ProbeData, ProbeSettings, fit_and_score


def low_shot_subset(groups: np.ndarray, fraction: float, seed: int, split: int) -> np.ndarray:
    """Indices of the training samples of ``fraction`` of the groups (whole episodes, or
    videos), chosen by (seed, split, fraction): frames of one episode are strongly correlated,
    so a fraction of the frames would label almost every episode and flatter the encoder."""
    units = np.unique(groups)
    count = max(1, round(fraction * len(units)))
    if count >= len(units):
        return np.arange(len(groups))
    rng = np.random.default_rng([seed, split, round(fraction * 1_000_000)])
    chosen = rng.choice(units, size=count, replace=False)
    return np.flatnonzero(np.isin(groups, chosen))


def _spread(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, np.float64)
    return {"mean": float(array.mean()), "std": float(array.std())}


def low_shot(
    data: ProbeData,
    name: str,
    task: str,
    settings: ProbeSettings,
    fractions: list[float],
    splits: int,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
    full: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per fraction: the metric's mean / std over ``splits`` subsets and the same per target.

    ``full`` is the probe already trained on every label (fraction 1 has one split only).
    """
    if data.train_groups is None:
        raise ValueError("low-shot evaluation needs the training samples' groups")
    metric = "mean_r2" if task == "regression" else "accuracy"
    report: dict[str, Any] = {}
    for fraction in fractions:
        runs = []
        for split in range(1 if fraction >= 1.0 else splits):
            if fraction >= 1.0 and full is not None:
                runs.append({**full, "train_samples": int(data.y_train.shape[0])})
                continue
            indices = low_shot_subset(data.train_groups, fraction, seed, split)
            result = fit_and_score(data.subset(indices), name, task, settings, seed, device, progress)
            runs.append({**result, "train_samples": int(len(indices))})
        units = len(np.unique(data.train_groups))
        used = units if fraction >= 1.0 else min(units, max(1, round(fraction * units)))
        entry: dict[str, Any] = {
            **_spread([r[metric] for r in runs]),
            # the subsets are whole groups: with few of them the fraction used is not the asked
            "groups": used,
            "of_groups": units,
            "used_fraction": used / units,
            "splits": len(runs),
            "train_samples": [r["train_samples"] for r in runs],
        }
        if task == "regression":
            entry["targets"] = {
                target: {
                    "r2": _spread([r["r2"][target] for r in runs]),
                    "rmse": _spread([r["rmse"][target] for r in runs]),
                }
                for target in data.names
            }
        report[f"{fraction:g}"] = entry
    return report
