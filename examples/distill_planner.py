"""Distil the planner into a small policy, then evaluate both on held-out episodes.

    python examples/distill_planner.py [--rounds N] [--episodes-per-round N] [--eval-episodes N]

The same as ``python -m jepa_world.distill`` followed by
``python -m planners.mpc --policy runs/distill/example/policy``, from Python.
"""

from __future__ import annotations

import argparse
from importlib import resources

from omegaconf import OmegaConf

from jepa_world.distill import distill
from jepa_world.schemas.distill import DistillConfig
from jepa_world.training.cli import typed_config
from planners.mpc import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="reach")
    parser.add_argument("--world-model", default=None, help="default: the task's shipped model")
    parser.add_argument("--out", default="runs/distill/example")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--episodes-per-round", type=int, default=16)
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--samples", type=int, default=None, help="planner samples (labelling)")
    args = parser.parse_args()

    settings = {} if args.samples is None else {"samples": args.samples,
                                                "elites": min(30, args.samples // 2)}
    cfg = typed_config(DistillConfig, {
        "env": args.env, "world_model": args.world_model, "out_dir": args.out,
        "rounds": args.rounds, "episodes_per_round": args.episodes_per_round,
        "budget": args.budget, "planner_settings": settings, "progress": False,
    })
    summary = distill(cfg)
    defaults = OmegaConf.load(str(resources.files("configs") / "mpc.yaml"))
    metrics = evaluate(OmegaConf.merge(defaults, {
        "env": args.env, "model": "distilled", "policy": summary["policy"],
        "episodes": args.eval_episodes, "budget": args.budget,
    }), progress=False, log=lambda _: None)
    last = summary["rounds"][-1]
    print(f"distilled in {len(summary['rounds'])} rounds ({last['labels']} labels): "
          f"success {100 * metrics['success_rate']:.0f} % at the end of {args.budget} steps "
          f"({100 * metrics['success_any_rate']:.0f} % at any step) on {args.eval_episodes} "
          f"held-out episodes, {metrics['plan_ms_median']:.1f} ms per step")


if __name__ == "__main__":
    main()
