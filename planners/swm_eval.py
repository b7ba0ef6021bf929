"""A jepa-world world model on stable-worldmodel's benchmark, under both protocols, in one command.

    python -m planners.swm_eval --env swm:PushT-v1 --checkpoint DIR --dataset DIR [--json F]
        [KEY=VALUE ...]   (planners.mpc's settings for our protocol, e.g. cem.samples=300)

- theirs: their ``World.evaluate`` drives their ``WorldModelPolicy`` and ``CEMSolver`` (300
  samples, 30 iterations, top 30, variance 1; horizon 5, action blocks of 5, replanning every
  5 blocks) on the world model through :class:`jepa_world.swm.SwmCost`. Each episode starts at
  a state of a recorded held-out dataset, the goal is the recorded state 25 steps later (its
  recorded frame is the goal image), the budget is 50 steps, success is their check at ANY
  step (their headline).
- ours: ``planners.mpc``'s evaluation with the model's own planner settings (or the
  ``KEY=VALUE`` settings given), from the same starts and goals: success judged at the END of
  the budget (our headline), any step beside it.
- random: uniform random actions under our runner, the lower row.
- oracle (the reacher): our CEM on the true simulator (MuJoCo under dm_control) scored by
  their joint errors, the upper row; Push-T's pymunk has no batched rollout here.

The held-out dataset is recorded by their ``World.collect`` (folder format) with their
recording policy (``WeakPolicy`` for Push-T, random actions for the reacher) at evaluation
seeds, disjoint from anything ``envs.collect`` records for training; an existing folder is reused.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from jepa_world.files import write_json_atomic
from jepa_world.training.cli import MAX_SEED, CommandParser, UserError, run_command
from planners.episodes import EVAL_SEED_BASE, EVAL_SEED_STRIDE

GOAL_OFFSET, BUDGET, RECORDED_STEPS = 25, 50, 100
THEIR_CEM = {"num_samples": 300, "n_steps": 30, "topk": 30, "var_scale": 1.0}
THEIR_PLAN = {"horizon": 5, "receding_horizon": 5, "action_block": 5}
PROTOCOLS = ("theirs", "ours", "random", "oracle")
# planners.mpc settings the protocol or this command's flags decide
FIXED_BY_PROTOCOL = ("env", "model", "episodes", "budget", "seed", "device", "image_size",
                     "frameskip", "checkpoint", "goal", "num_envs")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = CommandParser(prog="python -m planners.swm_eval",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="docs: docs/swm.md")
    parser.add_argument("--env", required=True, help="swm:PushT-v1 or swm:ReacherDMControl-v0")
    parser.add_argument("--checkpoint", required=True, help="world-model folder")
    parser.add_argument("--dataset", required=True,
                        help="held-out dataset folder (recorded with their World.collect if absent)")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes")
    parser.add_argument("--record-episodes", type=int, default=60,
                        help="episodes recorded into a new held-out dataset")
    parser.add_argument("--protocols", default="theirs,ours,random",
                        help="comma-separated: theirs, ours, random, oracle")
    parser.add_argument("--cem-samples", type=int, default=THEIR_CEM["num_samples"],
                        help="their CEMSolver's samples (their protocol: 300)")
    parser.add_argument("--cem-iterations", type=int, default=THEIR_CEM["n_steps"],
                        help="their CEMSolver's iterations (their protocol: 30)")
    parser.add_argument("--cem-topk", type=int, default=THEIR_CEM["topk"],
                        help="their CEMSolver's elites (their protocol: 30)")
    parser.add_argument("--seed", type=int, default=0, help="picks the held-out starts")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args, settings = parser.parse_known_args(argv)
    for token in settings:  # planners.mpc's KEY=VALUE settings, for our protocol's rows
        key = token.partition("=")[0]
        if token.startswith("-") or "=" not in token:
            parser.error(f"unrecognised argument {token!r} (flags, then planners.mpc's "
                         "KEY=VALUE settings for our protocol)")
        if key in FIXED_BY_PROTOCOL:
            parser.error(f"{key} is fixed by the protocol (or a flag here); leave it out")
    args.settings = settings
    return args


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every protocol asked for; returns (and writes with --json) their results."""
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown or not protocols:
        raise UserError(f"unknown protocols {unknown or protocols} (known: {', '.join(PROTOCOLS)})")
    if not 1 <= args.episodes <= EVAL_SEED_STRIDE or args.record_episodes < 1:
        raise UserError("--episodes and --record-episodes must be positive integers")
    if not 2 <= args.cem_topk <= args.cem_samples or args.cem_iterations < 1:  # std of elites
        raise UserError(f"their CEM needs 2 <= --cem-topk <= --cem-samples and --cem-iterations "
                        f">= 1, got {args.cem_topk}, {args.cem_samples}, {args.cem_iterations}")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed must be in [0, {MAX_SEED}], got {args.seed}")
    if args.settings:  # a mistyped planner setting is refused now, not after their protocol
        from jepa_world.training.cli import load_config

        load_config("mpc", list(args.settings))
    task_class = swm_task_class(args.env)
    if "oracle" in protocols and not task_class.has_oracle:
        raise UserError(f"{args.env} has no simulator oracle (its physics has no batched "
                        "rollout here): leave oracle out of --protocols")
    from jepa_world.world_model import WorldModel

    try:
        model = WorldModel.load(args.checkpoint, device=args.device).freeze()
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load world model {args.checkpoint}: {exc}") from None
    if "theirs" in protocols and model.frameskip != THEIR_PLAN["action_block"]:
        raise UserError(f"their protocol plans blocks of {THEIR_PLAN['action_block']} actions; "
                        f"the world model's frameskip is {model.frameskip}")
    dataset = held_out_dataset(args.env, task_class, Path(args.dataset), args.record_episodes,
                               model.image_size, quiet=args.quiet)
    pairs = pick_starts(dataset, args.episodes, args.seed)
    starts = [task_class.reset_options_from(dataset, episode, step, GOAL_OFFSET)
              for episode, step in pairs]  # our runner's resets, read once for every row
    results: dict[str, Any] = {"env": args.env, "checkpoint": str(args.checkpoint),
                               "dataset": str(args.dataset), "episodes": args.episodes,
                               "goal_offset": GOAL_OFFSET, "budget": BUDGET, "seed": args.seed}
    if "theirs" in protocols:
        results["theirs"] = their_protocol(args.env, task_class, model, dataset, pairs, args)
        report(f"theirs (their World.evaluate, their CEMSolver {args.cem_samples} samples x "
               f"{args.cem_iterations} iterations)", results["theirs"])
    for kind in ("ours", "random", "oracle"):
        if kind in protocols:
            results[kind] = our_protocol(args, kind, model, starts)
            report(f"{kind} (planners.mpc from the same starts)", results[kind])
    if args.json:
        write_json_atomic(args.json, results, sort_keys=False)
    return results


def swm_task_class(env: str) -> Any:
    from envs.swm_tasks import swm_task_class as adapter_class

    try:
        return adapter_class(env)
    except ValueError as exc:  # unknown name, missing extra, not a stable-worldmodel task
        raise UserError(str(exc)) from None


# ---------------------------------------------------------------------------- held-out data
def held_out_dataset(env: str, task_class: Any, folder: Path, episodes: int, image_size: int,
                     quiet: bool) -> Any:
    """Their FolderDataset at ``folder``, recorded first when the folder does not exist."""
    from envs.swm_tasks import import_swm

    import_swm()
    from stable_worldmodel.data import FolderDataset

    if not folder.exists():
        world = their_world(task_class, num_envs=1, image_size=image_size,
                            max_episode_steps=RECORDED_STEPS)
        world.set_policy(task_class.their_recording_policy(EVAL_SEED_BASE))
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # a killed recording: their writer appends
        started = time.perf_counter()
        world.collect(str(partial), episodes=episodes, seed=EVAL_SEED_BASE, format="folder",
                      progress=not quiet)
        partial.rename(folder)
        world.close()
        print(f"recorded {episodes} held-out {env} episodes with their World.collect into "
              f"{folder} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    try:
        return FolderDataset(path=str(folder))
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"{folder} is not a stable-worldmodel folder dataset: {exc}") from None


def pick_starts(dataset: Any, episodes: int, seed: int) -> list[tuple[int, int]]:
    """(dataset episode, start step) pairs drawn under ``seed``: the goal, 25 steps later, is
    inside the episode."""
    lengths = np.asarray(dataset.lengths)
    usable = np.flatnonzero(lengths > GOAL_OFFSET)
    if usable.size == 0:
        raise UserError(f"no episode of the held-out dataset is longer than {GOAL_OFFSET} steps")
    rng = np.random.default_rng(EVAL_SEED_BASE + seed)
    chosen = rng.choice(usable, size=episodes, replace=episodes > usable.size)
    return [(int(e), int(rng.integers(0, lengths[e] - GOAL_OFFSET))) for e in chosen]


def their_world(task_class: Any, num_envs: int, image_size: int, max_episode_steps: int) -> Any:
    """Their World over the task's environment, frames rendered at ``image_size`` by their
    own renderer (as the task adapter renders them for training)."""
    from envs.swm_tasks import import_swm

    swm = import_swm()
    return swm.World(task_class.swm_id, num_envs=num_envs, image_shape=(image_size, image_size),
                     max_episode_steps=max_episode_steps,
                     pre_wrappers=task_class.their_pre_wrappers(image_size),
                     **task_class.their_make_kwargs(image_size))


# ---------------------------------------------------------------------------- protocols
def their_protocol(env: str, task_class: Any, model: Any, dataset: Any,
                   pairs: list[tuple[int, int]], args: argparse.Namespace) -> dict[str, Any]:
    from stable_worldmodel.policy import PlanConfig, WorldModelPolicy
    from stable_worldmodel.solver import CEMSolver

    from jepa_world.swm import SwmCost

    world = their_world(task_class, num_envs=len(pairs), image_size=model.image_size,
                        max_episode_steps=BUDGET + 1)
    cem = {**THEIR_CEM, "num_samples": args.cem_samples, "n_steps": args.cem_iterations,
           "topk": args.cem_topk}
    solver = CEMSolver(SwmCost(model, env), batch_size=len(pairs), device=str(model.device),
                       seed=args.seed, **cem)
    world.set_policy(WorldModelPolicy(solver, PlanConfig(**THEIR_PLAN)))
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # their solver prints its timings
        result = world.evaluate(dataset=dataset, episodes_idx=[e for e, _ in pairs],
                                start_steps=[s for _, s in pairs], goal_offset=GOAL_OFFSET,
                                eval_budget=BUDGET, callables=task_class.their_callables())
    seconds = time.perf_counter() - started
    world.close()
    successes = np.asarray(result["episode_successes"], bool)
    plans = len(pairs) * -(-BUDGET // (THEIR_PLAN["receding_horizon"] * THEIR_PLAN["action_block"]))
    return {"success_any_rate": float(successes.mean()), "success_rate": None,
            "episode_successes": successes.tolist(), "seconds": seconds,
            "seconds_per_plan": seconds / plans, "solver": {**cem, **THEIR_PLAN}}


def our_protocol(args: argparse.Namespace, kind: str, model: Any,
                 starts: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """planners.mpc's evaluation (``kind``: ours = the learned model and its planner, random,
    oracle) from the held-out pairs' starts and goals (reset options)."""
    from jepa_world.training.cli import load_config
    from planners.mpc import evaluate

    cfg = load_config("mpc", list(getattr(args, "settings", [])))
    fixed = {"env": args.env, "model": "learned" if kind == "ours" else kind,
             "episodes": len(starts), "budget": BUDGET, "seed": args.seed, "device": args.device,
             "image_size": model.image_size, "frameskip": model.frameskip, "checkpoint": None}
    for key, value in fixed.items():
        cfg[key] = value
    return evaluate(cfg, model=model if kind == "ours" else None, progress=not args.quiet,
                    log=lambda line: None, reset_options=lambda index: starts[index])


def report(name: str, result: dict[str, Any]) -> None:
    end = result.get("success_rate")
    line = f"{name}: success at any step {100 * result['success_any_rate']:.0f} %"
    if end is not None:
        line += f", at the end {100 * end:.0f} %"
    print(line)


if __name__ == "__main__":
    run_command(main, interrupted="no results written")
