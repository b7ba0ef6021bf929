"""Plan with a jepa-world world model inside stable-worldmodel: their World, their CEMSolver.

    python examples/swm_solver.py --model DIR [--episodes N] [--samples 300 --iterations 30]

The world model is any jepa-world model trained on ``swm:PushT-v1`` (for example the one
``python -m jepa_world.build --env swm:PushT-v1`` writes); ``SwmCost`` gives it their cost
protocol, so their ``CEMSolver`` and ``WorldModelPolicy`` run it unchanged in ``World``'s
episodic evaluation (their own random goals, success at any step). ``planners.swm_eval`` runs
the benchmark protocol (held-out dataset starts, goal 25 steps later) and ours side by side.
Needs ``pip install "jepa-world[swm]"``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import envs  # noqa: F401  (sets up headless rendering before their import)
from envs.swm_tasks import SwmPushT, import_swm
from jepa_world import WorldModel
from jepa_world.swm import SwmCost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="world-model folder trained on swm:PushT-v1")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--budget", type=int, default=50, help="env steps per episode")
    parser.add_argument("--samples", type=int, default=300, help="CEM samples (theirs: 300)")
    parser.add_argument("--iterations", type=int, default=30, help="CEM iterations (theirs: 30)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    swm = import_swm()
    from stable_worldmodel.policy import PlanConfig, WorldModelPolicy
    from stable_worldmodel.solver import CEMSolver

    model = WorldModel.load(args.model).freeze()
    solver = CEMSolver(SwmCost(model, "swm:PushT-v1"), batch_size=args.episodes,
                       num_samples=args.samples, n_steps=args.iterations,
                       topk=max(2, args.samples // 10), seed=args.seed)  # theirs: 30 of 300
    plan = PlanConfig(horizon=5, receding_horizon=5, action_block=model.frameskip)
    # frames from their renderer at the model's size, as the task adapter records them
    world = swm.World("swm/PushT-v1", num_envs=args.episodes, max_episode_steps=args.budget,
                      image_shape=(model.image_size, model.image_size),
                      **SwmPushT.their_make_kwargs(model.image_size))
    world.set_policy(WorldModelPolicy(solver, plan))
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # their solver prints its timings
        result = world.evaluate(episodes=args.episodes, seed=args.seed)
    seconds = time.perf_counter() - started
    world.close()
    print(f"their CEMSolver ({args.samples} x {args.iterations}) on {args.model}: "
          f"{result['success_rate']:.0f} % of {args.episodes} episodes reach their random goal "
          f"(any step, budget {args.budget}) in {seconds:.0f} s")


if __name__ == "__main__":
    main()
