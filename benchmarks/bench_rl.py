"""Imagined steps per second (one env vs batched) and the real env seen through the wrappers.

    python benchmarks/bench_rl.py --dataset DIR [--model reach] [--episodes 20] [--steps 2000]

Each imagined step is one action block predicted by ``WorldModel.step`` from the latent alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402

import envs  # noqa: E402, F401
from benchmarks.results import report  # noqa: E402
from jepa_world import WorldModel  # noqa: E402
from jepa_world.rl import (  # noqa: E402
    GoalEnergyReward,
    ImaginedEnv,
    ImaginedStarts,
    ImaginedVectorEnv,
    LatentObservation,
)


def steps_per_second(env, steps: int, action_dim: int) -> float:
    """Random actions through a single env, resetting at episode ends."""
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, action_dim)).astype(np.float32)
    started = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - started)


def imagined_batched(model, starts, num_envs: int, steps: int) -> float:
    env = ImaginedVectorEnv(model, starts, num_envs=num_envs)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    calls = max(steps // num_envs, 5)
    actions = rng.uniform(-1, 1, (calls, num_envs, model.action_dim)).astype(np.float32)
    started = time.perf_counter()
    for batch in actions:
        env.step(batch)
    return calls * num_envs / (time.perf_counter() - started)


def real_wrapped(model) -> gym.Env:
    env = gym.make("jepa_world/Reach-v0", image_size=model.image_size, max_episode_steps=50)
    return GoalEnergyReward(LatentObservation(env, model), model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="recorded dataset of the model's task")
    parser.add_argument("--model", default="reach")
    parser.add_argument("--episodes", type=int, default=20, help="recorded episodes to start from")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batches", default="16,64,256")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    model = WorldModel.load(args.model)
    starts = ImaginedStarts(model, args.dataset, episodes=args.episodes)
    single = steps_per_second(ImaginedEnv(model, starts), args.steps, model.action_dim)
    rows = [["ImaginedEnv", 1, f"{single:.0f}"]]
    for num_envs in (int(b) for b in args.batches.split(",")):
        rate = imagined_batched(model, starts, num_envs, args.steps * 4)
        rows.append(["ImaginedVectorEnv", num_envs, f"{rate:.0f}"])
        print(f"{num_envs} envs: {rate:.0f} imagined steps/s", flush=True)
    rows.append(["real reach + LatentObservation + GoalEnergyReward (env steps)", 1,
                 f"{steps_per_second(real_wrapped(model), args.steps // 4, model.action_dim):.0f}"])
    k, d = model.latent_shape
    report("RL on the world model: imagined and real steps per second",
           ["env", "envs per call", "steps/s"], rows,
           notes=f"World model {args.model} (latent {k}x{d}, frameskip {model.frameskip}): one "
                 "imagined step is one action block; a real step is one env step with rendering "
                 "and one encoder pass.", record=not args.no_record)


if __name__ == "__main__":
    main()
