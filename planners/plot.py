"""What the planner sees: the world model's energy over a 2-D slice of the action space, for one
frame and goal, beside the true cost that the simulator gives the same actions.

    python -m planners.plot --env reach [--checkpoint DIR] [--seed 0] [--episode 0]
        [--grid 31] [--out energy.png] [key=value ...]   (planner settings, as planners.mpc)

Each point of the slice is one action held for the whole horizon (every block, every env step;
actions beyond the first two dimensions stay 0), scored as the planner scores a candidate: the
model's rollout from the encoded frame against the encoded goal image, with the command's energy
(metric, energy steps, state readout). The true cost is the same candidate rolled out in the
simulator, scored with the oracle's cost against the goal state; a good world model has its
valley where the simulator has its valley. Tasks without a MuJoCo simulator show the energy
alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepa_world.training.cli import (
    CommandParser,
    UserError,
    check_seed,
    load_config,
    run_command,
    typed_config,
)

MAX_GRID = 101


def constant_candidates(grid: int, horizon: int, frameskip: int, action_dim: int,
                        low: float, high: float) -> tuple[np.ndarray, torch.Tensor]:
    """The slice's axis values [grid] and its candidates [grid * grid, H, fs, A] (row-major:
    candidate i * grid + j holds action (axis[i], axis[j], 0, ...))."""
    axis = np.linspace(low, high, grid)
    first, second = np.meshgrid(axis, axis, indexing="ij")
    actions = np.zeros((grid * grid, action_dim), np.float32)
    actions[:, 0] = first.reshape(-1)
    if action_dim > 1:
        actions[:, 1] = second.reshape(-1)
    candidates = torch.from_numpy(actions)[:, None, None, :].expand(-1, horizon, frameskip, -1)
    return axis, candidates.contiguous()


@torch.no_grad()
def model_energy(model: Any, energy: Any, frame: np.ndarray, goal: np.ndarray,
                 proprio: np.ndarray, candidates: torch.Tensor) -> np.ndarray:
    """The planner's energy of every candidate [N] from one frame towards one goal image."""
    z_now = model.encode(torch.from_numpy(frame[None]))
    z_goal = model.encode(torch.from_numpy(goal[None]))
    p = torch.from_numpy(np.asarray(proprio, np.float32)[None])
    predicted = model.rollout_many(z_now, candidates[None].to(z_now.device),
                                   p if model.proprio_dim else None)
    return energy(predicted[0], z_goal).float().cpu().numpy()


def true_cost(task: Any, energy: Any, frameskip: int, candidates: torch.Tensor) -> np.ndarray | None:
    """The same candidates in the simulator, scored by the oracle's cost; None without one."""
    from planners.energy import Energy
    from planners.oracle import OracleModel

    env = task.unwrapped
    if not all(hasattr(env, name) for name in ("model", "frame_skip", "oracle_cost")):
        return None
    oracle = OracleModel.from_env(env, frameskip=frameskip)
    try:
        qpos, qvel = env.get_state()
        start = oracle.encode_state(qpos, qvel).expand(len(candidates), -1, -1)
        goal = oracle.encode_state(env.goal_qpos)
        states = oracle.rollout(start, candidates.double())
        cost = Energy(energy.metric, energy.steps, energy.step_weights, oracle.distance)
        return cost(states, goal).numpy()
    finally:
        oracle.close()


def draw(path: Path, frame: np.ndarray, goal: np.ndarray, axis: np.ndarray,
         energy: np.ndarray, cost: np.ndarray | None, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, a lighter import

    from jepa_world.files import atomic_path

    grid = len(axis)
    panels = 3 if cost is None else 4
    figure = Figure(figsize=(3.4 * panels, 3.4))
    axes = figure.subplots(1, panels)
    axes[0].imshow(frame)
    axes[0].set_title("current frame", fontsize=9)
    axes[1].imshow(goal)
    axes[1].set_title("goal image", fontsize=9)
    for image_axis in axes[:2]:
        image_axis.axis("off")
    maps = [("world model's energy", energy)] + ([] if cost is None else
                                                 [("simulator's true cost", cost)])
    extent = [axis[0], axis[-1], axis[0], axis[-1]]
    for plot_axis, (name, values) in zip(axes[2:], maps, strict=True):
        values = values.reshape(grid, grid)  # [first action, second action]
        image = plot_axis.imshow(values.T, origin="lower", extent=extent, cmap="viridis")
        best = np.unravel_index(int(np.argmin(values)), values.shape)
        plot_axis.plot(axis[best[0]], axis[best[1]], marker="x", color="red", markersize=9)
        plot_axis.set_title(name, fontsize=9)
        plot_axis.set_xlabel("action[0], held", fontsize=8)
        plot_axis.set_ylabel("action[1], held", fontsize=8)
        plot_axis.tick_params(labelsize=7)
        figure.colorbar(image, ax=plot_axis, fraction=0.046, pad=0.04)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def main(argv: list[str]) -> int:
    from planners import mpc
    from planners.episodes import eval_seed

    parser = CommandParser(prog="python -m planners.plot",
                                     description=__doc__.splitlines()[0],
                                     epilog="Planner settings as for planners.mpc (python -m "
                                     "planners.mpc --help lists them). docs: docs/planning.md")
    parser.add_argument("--env", required=True, help="task name, e.g. reach or push")
    parser.add_argument("--checkpoint", help="WorldModel directory or shipped name "
                        "(default: the task's shipped model)")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed set, as planners.mpc")
    parser.add_argument("--episode", type=int, default=0, help="which episode of that set")
    parser.add_argument("--goal", help="goal protocol (default: the task's)")
    parser.add_argument("--grid", type=int, default=31, help="points per axis of the slice")
    parser.add_argument("--out", default="energy.png", help="the PNG written")
    args, rest = parser.parse_known_args(argv)
    check_seed(args.seed, "--seed")
    if not 2 <= args.grid <= MAX_GRID:
        raise UserError(f"--grid must be in [2, {MAX_GRID}], got {args.grid}")
    if args.episode < 0:
        raise UserError(f"--episode must be >= 0, got {args.episode}")
    cfg = load_config("mpc", rest)
    cfg.env, cfg.seed = args.env, args.seed
    cfg.checkpoint = args.checkpoint or mpc.default_checkpoint(args.env)
    if args.goal is not None:
        cfg.goal = args.goal
    cfg = typed_config(mpc.MPCConfig, cfg)
    task = mpc.open_tasks(cfg.env, 1, cfg.image_size, cfg.budget, cfg.goal)[0]
    try:
        model = mpc.load_world_model(cfg.checkpoint, torch.device("cpu"))
        mpc.apply_model_planning(cfg, model)
        _, settings = mpc.planner_settings(cfg, (float(task.action_space.low.min()),
                                                 float(task.action_space.high.max())))
        options = {} if cfg.goal is None else {"goal_protocol": cfg.goal}
        obs, info = task.reset(seed=eval_seed(cfg.seed, args.episode), options=options)
        axis, candidates = constant_candidates(args.grid, settings.horizon, model.frameskip,
                                               model.action_dim, settings.action_low,
                                               settings.action_high)
        energy = settings.objective(model)
        learned = model_energy(model, energy, obs["pixels"], info["goal_pixels"],
                               obs["proprio"], candidates)
        cost = true_cost(task, energy, model.frameskip, candidates)
    finally:
        task.close()
    title = (f"{cfg.env} | {cfg.checkpoint} | episode {args.episode} of seed {cfg.seed} | "
             f"one action held for {settings.horizon} blocks of {model.frameskip} steps")
    out = Path(args.out)
    draw(out, obs["pixels"], info["goal_pixels"], axis, learned, cost, title)
    agree = ""
    if cost is not None:
        held = candidates[:, 0, 0, :2].numpy()
        gap = float(np.abs(held[np.argmin(learned)] - held[np.argmin(cost)]).max())
        agree = f"; the energy's minimum is {gap:.2f} from the true cost's (in action units)"
    print(f"{out}: energy of {len(candidates)} held actions{agree}")
    return 0


if __name__ == "__main__":
    run_command(main, interrupted="nothing was written")
