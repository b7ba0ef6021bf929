"""A standard agent (PPO, stable-baselines3) on the world model's latents vs on raw pixels at
an equal budget of env steps, and the same agent trained only in imagination.

    python benchmarks/bench_rl_agents.py --dataset DIR [--model reach] [--steps 20000]
        [--imagined-steps 20000] [--eval-every 5000] [--curve-episodes 10] [--episodes 50]

Every agent is rewarded with minus the world model's energy to the goal image
(GoalEnergyReward) and never sees the simulator state or the success signal. Evaluation: the
held-out seeds and 50-step budget of planners.mpc, success judged by the task at the end of
the budget (any step beside it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402

import envs  # noqa: E402, F401
from benchmarks.results import report  # noqa: E402
from jepa_world import WorldModel  # noqa: E402
from jepa_world.rl import (  # noqa: E402
    BlockActions,
    GoalEnergyReward,
    GoalImageObservation,
    ImaginedEnv,
    ImaginedStarts,
    LatentObservation,
    held_out_success,
)


def real_env(model: WorldModel, kind: str, budget: int) -> gym.Env:
    env = gym.make("jepa_world/Reach-v0", image_size=model.image_size, max_episode_steps=budget)
    if kind == "pixels":  # the images themselves, the goal image beside them
        return GoalEnergyReward(GoalImageObservation(env), model)
    env = GoalEnergyReward(LatentObservation(env, model), model)
    return BlockActions(env, model.frameskip) if kind == "blocks" else env


def train(agent: Any, steps: int, every: int, curve_env: gym.Env, episodes: int,
          seed: int) -> tuple[list[str], float]:
    curve, spent, started = [], 0, time.perf_counter()
    while spent < steps:
        chunk = min(every, steps - spent)
        agent.learn(total_timesteps=chunk, reset_num_timesteps=False)
        spent += chunk
        end, _ = held_out_success(agent, curve_env, episodes, seed)
        done = agent.num_timesteps  # PPO collects whole rollouts of n_steps
        curve.append(f"{done / 1000:.1f}k: {100 * end:.0f} %")
        print(f"  {done} steps: {100 * end:.0f} % ({episodes} episodes)", flush=True)
        spent = max(spent, done)
    return curve, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="recorded reach dataset (imagination)")
    parser.add_argument("--model", default="reach")
    parser.add_argument("--steps", type=int, default=20000, help="real env steps per agent")
    parser.add_argument("--imagined-steps", type=int, default=20000, help="imagined blocks")
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--curve-episodes", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=50, help="final evaluation episodes")
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agents", default="latents,pixels,imagined")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    import stable_baselines3 as sb3

    model = WorldModel.load(args.model)
    rows = []
    for kind in args.agents.split(","):
        print(f"{kind}:", flush=True)
        if kind == "imagined":
            starts = ImaginedStarts(model, args.dataset)
            env = ImaginedEnv(model, starts, max_blocks=args.budget // model.frameskip)
            eval_kind, steps, every = "blocks", args.imagined_steps, args.imagined_steps // 4
        else:
            env = real_env(model, kind, args.budget)
            eval_kind, steps, every = kind, args.steps, args.eval_every
        policy = "MultiInputPolicy" if kind == "pixels" else "MlpPolicy"
        agent = sb3.PPO(policy, env, n_steps=1024, batch_size=64, seed=args.seed, device="cpu")
        curve, seconds = train(agent, steps, every, real_env(model, eval_kind, args.budget),
                               args.curve_episodes, args.seed)
        end, anytime = held_out_success(agent, real_env(model, eval_kind, args.budget),
                                        args.episodes, args.seed)
        what = {"latents": "real env steps, latent obs", "pixels": "real env steps, pixels",
                "imagined": "imagined blocks, 0 real steps"}[kind]
        rows.append([f"PPO on {kind}", f"{agent.num_timesteps} {what}", f"{100 * end:.0f} %",
                     f"{100 * anytime:.0f} %", ", ".join(curve), f"{seconds:.0f}"])
        print(rows[-1], flush=True)
    report("RL on the world model: PPO on latents vs pixels vs imagination (reach, issue 13)",
           ["agent", "training", f"success (end), {args.episodes} eps",
            "success (any step)", f"curve (end, {args.curve_episodes} eps)", "train s"], rows,
           notes=f"World model {args.model}; reward = minus its L2 energy to the goal image for "
                 "every agent; held-out evaluation seeds of planners.mpc, budget "
                 f"{args.budget} env steps (the imagined agent acts in held blocks of "
                 f"{model.frameskip} steps through BlockActions). PPO defaults of "
                 "stable-baselines3 except n_steps=1024, batch 64.", record=not args.no_record)


if __name__ == "__main__":
    main()
