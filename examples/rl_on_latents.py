"""Train a stable-baselines3 agent on the world model's latents with a reward from images.

    python examples/rl_on_latents.py [--algo sac|ppo] [--timesteps N] [--episodes N]

The agent sees ``[latent | proprio | goal latent]`` (LatentObservation) and is rewarded with
minus the latent energy to the goal image (GoalEnergyReward); it never sees the simulator
state or the success signal. Evaluation uses the held-out seeds and budget of
``planners.mpc`` and reports the task's success at the end of the budget.
Needs ``pip install ".[rl]"``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

import envs  # noqa: F401  (registers the tasks)
from jepa_world import WorldModel
from jepa_world.rl import GoalEnergyReward, LatentObservation, held_out_success


def make_env(model: WorldModel, task: str, budget: int) -> gym.Env:
    env = gym.make(envs.resolve_env_id(task), max_episode_steps=budget,
                   image_size=model.image_size)
    return GoalEnergyReward(LatentObservation(env, model), model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="reach")
    parser.add_argument("--model", default="reach", help="world model directory or shipped name")
    parser.add_argument("--algo", default="sac", choices=["sac", "ppo"])
    parser.add_argument("--timesteps", type=int, default=5000)
    parser.add_argument("--budget", type=int, default=50, help="env steps per episode")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import stable_baselines3 as sb3
    except ImportError:
        raise SystemExit('error: this example needs stable-baselines3: pip install ".[rl]"') from None

    model = WorldModel.load(args.model)
    env = make_env(model, args.env, args.budget)
    if args.algo == "sac":
        agent = sb3.SAC("MlpPolicy", env, learning_starts=min(500, args.timesteps // 2),
                        batch_size=64, seed=args.seed, device="cpu", verbose=0)
    else:
        agent = sb3.PPO("MlpPolicy", env, n_steps=min(512, args.timesteps), batch_size=64,
                        seed=args.seed, device="cpu", verbose=0)
    started = time.perf_counter()
    agent.learn(total_timesteps=args.timesteps)
    trained = time.perf_counter() - started
    end, anytime = held_out_success(agent, make_env(model, args.env, args.budget), args.episodes,
                                    args.seed)
    print(f"{args.algo} on latents of {args.model}, {args.timesteps} env steps in {trained:.0f} s: "
          f"success {100 * end:.0f} % at the end of {args.budget} steps, {100 * anytime:.0f} % "
          f"at any step ({args.episodes} held-out episodes)")


if __name__ == "__main__":
    main()
