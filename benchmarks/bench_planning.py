"""Planning in a task: success and replanning time of CEM / MPPI / gradient with the learned
world model, next to the simulator oracle (upper bound) and random actions (lower bound).

    python benchmarks/bench_planning.py [--env reach] [--episodes 50] [--checkpoint NAME_OR_DIR]
        [--goals offset,uniform] [--no-budget] [--no-record] [--budget-episodes 20]
        [--num-envs 8] [--planners cem,mppi,gradient] [key=value ...]

Three tables, every run through ``planners.mpc.evaluate`` exactly as the command runs it
(trailing key=value arguments override configs/mpc.yaml for every run):
1. success at the end / at any step, the task's headline error metric and replanning time per
   model, planner and goal protocol, on ``--episodes`` evaluation episodes each;
2. success vs planning budget (CEM samples x iterations) on offset goals;
3. where a replanning step's time goes: encoding frames, the world model's rollouts (forward,
   and backward for the gradient planner), the planner's own sampling and updates, and
   stepping + rendering the env.
The oracle plans in the true simulator from the true state with the goal state: it is an
upper bound on what a perfect world model could reach with the same planner and budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import report  # noqa: E402
from jepa_world.training.cli import UserError, load_config  # noqa: E402
from planners import mpc  # noqa: E402

BUDGET_GRID = [(30, 3), (100, 10), (300, 10), (300, 30)]  # (samples, iterations)


def run(overrides: list[str], model: Any = None, model_kind: str = "learned",
        **keys: Any) -> dict:
    """One evaluation; ``model`` is the already loaded learned model (loaded once)."""
    cfg = load_config("mpc", overrides)
    cfg["model"] = model_kind
    for key, value in keys.items():
        cfg[key] = value
    return mpc.evaluate(cfg, model=model, progress=True, log=lambda line: None)


def pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--budget-episodes", type=int, default=20,
                        help="episodes per cell of the planning-budget table")
    parser.add_argument("--env", default="reach", help="task name")
    parser.add_argument("--checkpoint", help="world model (default: the task's shipped one)")
    parser.add_argument("--goals", help="goal protocols (default: all of the task's)")
    parser.add_argument("--no-budget", action="store_true", help="skip the CEM budget table")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--planners", default="cem,mppi,gradient")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-record", action="store_true")
    args, overrides = parser.parse_known_args()
    import envs

    planners = [p for p in args.planners.split(",") if p]
    common = {"num_envs": args.num_envs, "device": args.device, "env": args.env}
    task = envs.make_task(args.env)
    goals = args.goals.split(",") if args.goals else list(task.goal_protocols)
    metric, unit = task.metric_names[0], task.metric_units.get(task.metric_names[0], "")
    task.close()
    args.checkpoint = args.checkpoint or envs.short_name(args.env)

    learned, learned_note = None, ""
    try:
        learned = mpc.load_world_model(args.checkpoint, mpc.resolve_device(args.device))
    except UserError as exc:
        learned_note = f"Learned-model rows skipped: {exc}."

    # ------------------------------------------------------------------ 1. success + time
    runs: list[tuple[str, str, str, dict]] = []
    for goal in goals:
        cases: list[tuple[str, str]] = []
        if learned is not None:
            cases += [("learned", p) for p in planners]
        cases += [("oracle", p) for p in planners if p != "gradient"]
        cases.append(("random", "-"))
        for kind, planner in cases:
            keys = {"goal": goal, "episodes": args.episodes, **common}
            if planner != "-":
                keys["planner"] = planner
            if kind == "learned":
                keys["checkpoint"] = args.checkpoint
            metrics = run(overrides, model=learned if kind == "learned" else None,
                          model_kind=kind, **keys)
            runs.append((kind, planner, goal, metrics))
    rows = [
        [kind, planner, goal, m["episodes"], pct(m["success_rate"]), pct(m["success_any_rate"]),
         f"{m[f'final_{metric}_mean']:.3f}", ms(m["plan_ms_median"]), ms(m["plan_ms_p90"])]
        for kind, planner, goal, m in runs
    ]
    settings = next((m["settings"] for _, _, _, m in runs if m["settings"]), {})
    report(
        f"Planning in {args.env}: success and replanning time",
        ["model", "planner", "goal", "episodes", "success", "success any step",
         f"final {metric} ({unit})", "replan ms median", "replan ms p90"],
        rows,
        notes=(
            f"Budget {runs[0][3]['budget']} env steps, blocks of {settings.get('frameskip', 5)} "
            f"steps, horizon "
            f"{settings.get('horizon')}, energy {settings.get('metric')} over "
            f"{settings.get('energy_steps')} steps, warm start; {args.num_envs} episodes planned "
            "per call, so a replanning time covers that many environments. Oracle = true "
            "simulator + goal state (upper bound); random = uniform actions. Overrides: "
            + (" ".join(overrides) or "none") + ". " + learned_note
        ),
        record=not args.no_record,
    )

    # ------------------------------------------------------------------ 2. planning budget
    budget_rows = []
    kinds = [] if args.no_budget else (["learned"] if learned is not None else []) + ["oracle"]
    for kind in kinds:
        for samples, iterations in BUDGET_GRID:
            elites = max(samples // 10, 2)
            m = run(
                [*overrides, f"cem.samples={samples}", f"cem.iterations={iterations}",
                 f"cem.elites={elites}"],
                model=learned if kind == "learned" else None,
                model_kind=kind, planner="cem", goal=goals[0], episodes=args.budget_episodes,
                **common,
            )
            budget_rows.append([kind, samples, iterations, samples * iterations,
                                pct(m["success_rate"]), f"{m[f'final_{metric}_mean']:.3f}",
                                ms(m["plan_ms_median"])])
    if budget_rows:
        report(
            f"Planning in {args.env}: success vs CEM budget",
            ["model", "samples", "iterations", "sequences per plan", "success",
             f"final {metric} ({unit})", "replan ms median"],
            budget_rows,
            notes=f"{goals[0]} goals, {args.budget_episodes} episodes per cell, "
                  "elites = samples / 10.",
            record=not args.no_record,
        )

    # ------------------------------------------------------------------ 3. time breakdown
    breakdown = []
    for kind, planner, goal, m in runs:
        if goal != goals[0] or kind == "random":
            continue
        t = m["timing"]
        planner_own = max(t["planner_ms_per_replan"] - t["model_ms_per_replan"], 0.0)
        breakdown.append([
            kind, planner, t["envs_per_replan"], f"{t['encode_ms_per_replan']:.1f}",
            f"{t['model_ms_per_replan']:.1f}", f"{planner_own:.1f}",
            f"{t['env_ms_per_step'] * t['envs_per_replan'] * settings.get('frameskip', 5):.1f}",
        ])
    report(
        f"Planning in {args.env}: where a replanning step's time goes (ms)",
        ["model", "planner", "envs per call", "encode frames", "world model (rollout)",
         "sampling + updates", "env steps + render (one block)"],
        breakdown,
        notes=f"Means per replanning step over the {goals[0]} runs above; 'world model' "
              "includes the backward pass for the gradient planner.",
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
