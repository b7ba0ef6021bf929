"""Env steps per second with rendering, and recording throughput of envs.collect.

    python benchmarks/bench_env.py [--steps 500] [--episodes 16] [--no-record]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402
from benchmarks.results import report  # noqa: E402
from envs.collect import collect  # noqa: E402


def env_steps_per_second(image_size: int, steps: int) -> float:
    env = envs.make("reach", image_size=image_size, max_episode_steps=10**9)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 2)).astype(np.float32)
    env.step(actions[0])  # the first render creates the GL context
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def recording_frames_per_second(workers: int, episodes: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        summary = collect("reach", episodes, Path(tmp) / "d", steps=steps, workers=workers,
                          progress=False)
    return summary["frames_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--episode-steps", type=int, default=100)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rows = []
    for size in (64, 224):
        rows.append([f"env.step + render {size}px", "1 process",
                     f"{env_steps_per_second(size, args.steps):.0f} steps/s"])
    for workers in (1, 2):
        fps = recording_frames_per_second(workers, args.episodes, args.episode_steps)
        rows.append([f"envs.collect 64px, {args.episodes} x {args.episode_steps} steps",
                     f"{workers} worker(s)", f"{fps:.0f} frames/s"])
    report("Reach env and recorder throughput", ["what", "parallelism", "throughput"], rows,
           notes="Recording includes rollout, lossless mp4 encoding, npz and manifest writes; "
                 "2-worker runs pay process start-up (spawn) inside the measured time.",
           record=not args.no_record)


if __name__ == "__main__":
    main()
