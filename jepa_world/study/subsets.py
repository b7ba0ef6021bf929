"""Action-labelled subsets of a recorded pool: which episodes a world model may train on.

A subset is drawn from the union of the pool's datasets, reproducibly from (seed, fraction,
index) alone, so that adding a fraction or a subset to a study never changes the others. It
is written as ordinary dataset folders (a manifest listing the chosen episodes, the episodes
themselves linked, not copied), so every command reads it as it reads a recording.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.dataset_format import EPISODES_DIR, MANIFEST, load_manifest
from jepa_world.files import write_json_atomic

MIN_EPISODES = 2  # a world model needs one training and one validation episode


class SubsetError(ValueError):
    """A fraction the pool cannot honour; the message is one line."""


@dataclass(frozen=True)
class Subset:
    fraction: float
    index: int
    episodes: tuple[tuple[str, str], ...]  # (dataset name, episode name), sorted

    @property
    def label(self) -> str:
        return f"{fraction_label(self.fraction)}-{self.index}"


def fraction_label(fraction: float) -> str:
    """0.05 -> 'p5', 0.125 -> 'p12.5', 1.0 -> 'p100': a folder name that sorts by value."""
    return f"p{100 * fraction:g}"


def parse_fractions(text: str) -> list[float]:
    """'0.05,0.1,1' -> [0.05, 0.1, 1.0]: each in (0, 1], no repeats."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SubsetError(
            f"--fractions takes numbers in (0, 1] separated by commas, got {text!r}"
        ) from None
    if not values:
        raise SubsetError("--fractions is empty: give e.g. 0.05,0.1,0.25,1")
    bad = [v for v in values if not 0 < v <= 1]
    if bad:
        raise SubsetError(f"a fraction of the labelled episodes must be in (0, 1], got {bad[0]:g}")
    if len(set(values)) != len(values):
        raise SubsetError(f"--fractions repeats a value: {text}")
    return sorted(values)


def pool_episodes(datasets: dict[str, Path]) -> list[tuple[str, str]]:
    """Every (dataset name, episode name) of the pool, in a fixed order."""
    pool = []
    for name, folder in sorted(datasets.items()):
        pool += [(name, entry["name"]) for entry in load_manifest(folder)["episodes"]]
    return sorted(pool)


def draw_subsets(
    pool: list[tuple[str, str]], fractions: list[float], count: int, seed: int
) -> list[Subset]:
    """``count`` random subsets of each fraction below 1 (the whole pool once for 1)."""
    if count < 1:
        raise SubsetError(f"--subsets must be at least 1, got {count}")
    subsets = []
    for fraction in fractions:
        size = int(round(fraction * len(pool)))
        if size < MIN_EPISODES:
            raise SubsetError(
                f"{fraction:g} of {len(pool)} episodes is {size}: a world model needs at least "
                f"{MIN_EPISODES} (record more with --episodes or drop the fraction)"
            )
        if fraction == 1:
            subsets.append(Subset(1.0, 0, tuple(pool)))
            continue
        for index in range(count):
            rng = np.random.default_rng([seed, int(round(fraction * 1_000_000)), index])
            chosen = rng.choice(len(pool), size=size, replace=False)
            subsets.append(Subset(fraction, index, tuple(sorted(pool[i] for i in chosen))))
    return subsets


def subset_folders(subset: Subset, folder: Path) -> list[Path]:
    """Where ``write_subset`` puts the subset: one folder per source dataset it draws from."""
    return [folder / name for name in sorted({dataset for dataset, _ in subset.episodes})]


def write_subset(subset: Subset, datasets: dict[str, Path], folder: Path) -> list[Path]:
    """The subset as one dataset folder per source dataset it draws from (episodes linked);
    returns them. Rewriting the same subset leaves the same folders."""
    written = []
    for target in subset_folders(subset, folder):
        name = target.name
        source = datasets[name].resolve()
        manifest = load_manifest(source)
        keep = {episode for dataset, episode in subset.episodes if dataset == name}
        (target / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        for episode in sorted(keep):
            link = target / EPISODES_DIR / episode
            if not link.is_symlink():
                os.symlink(source / EPISODES_DIR / episode, link, target_is_directory=True)
        manifest["episodes"] = [e for e in manifest["episodes"] if e["name"] in keep]
        manifest["subset_of"] = {"dataset": str(source), "fraction": subset.fraction,
                                 "index": subset.index}
        write_json_atomic(target / MANIFEST, manifest)
        written.append(target)
    return written
