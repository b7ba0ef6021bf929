"""Far goals with a state-readout term in the energy: does reweighting the latent distance
toward the directions that carry the arm's state let the planner reach far goals?

    python benchmarks/bench_readout_energy.py --data DIR [DIR ...] [--checkpoint reach]
        [--weights 0,0.1] [--margin 0.05] [--goals uniform,offset] [--seeds 0]
        [--episodes 50] [--num-envs 10] [--no-record]

A linear map W from the world model's flattened latent to a state array of the recorded
episodes (``--target``, default ``joint_sincos``) is fitted by ridge regression on encoded
frames of ``--data`` (recording seeds, disjoint from the evaluation seeds). The energy then
becomes ``latent L2 + weight * max(0, |W (z - z_goal)|^2 - margin)``: the goal image goes
through the same map, so the planner still sees only images and proprioception (never the
goal state), and both terms are zero exactly at the goal latent. The margin switches the term
off near the goal, where the readout's own errors would compete with the latent distance.
Each row is ``planners.mpc.evaluate`` under the usual protocol with the world model's own
``distance`` (the hook ``planners.energy.Energy.for_model`` uses) and the model's own MLP
state readout (``jepa_world.readout``, the planners' default since) switched off.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.results import report  # noqa: E402
from jepa_world.data.episodes import EpisodeDataset  # noqa: E402
from jepa_world.data.latents import LatentTrajectories  # noqa: E402
from jepa_world.training.cli import load_config  # noqa: E402
from planners import mpc  # noqa: E402
from planners.energy import latent_distance  # noqa: E402


def encoded_states(model: Any, roots: list[str], target: str, limit: int) -> tuple[list, list]:
    """Per episode: latents [T,K*D] (``LatentTrajectories``) and the recorded ``target``
    array [T,S], for the first ``limit`` episodes of ``roots`` in order."""
    datasets = [EpisodeDataset(root) for root in roots]
    states = []
    for data in datasets:
        for ep in range(len(data)):
            if len(states) == limit:
                break
            arrays = data.arrays(ep)
            if target not in arrays:
                raise SystemExit(f"{data.root} episode {ep} has no array {target!r} "
                                 f"(has: {', '.join(sorted(arrays))})")
            states.append(torch.as_tensor(arrays[target]).double())
    with torch.inference_mode():
        encoded = LatentTrajectories(datasets, model, 64, show_progress=True, limit=limit)
    return [z.flatten(1).double() for z in encoded.latents], states


def fit_readout(latents: list, states: list, ridge: float) -> tuple[torch.Tensor, list[float]]:
    """Ridge fit on the first 90 % of the episodes; validation R^2 per state column."""
    split = max(1, int(0.9 * len(latents)))
    x, y = torch.cat(latents[:split]), torch.cat(states[:split])
    x_mean, y_mean = x.mean(0), y.mean(0)
    a, b = x - x_mean, y - y_mean
    w = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=a.dtype), a.T @ b)
    if split == len(latents):
        return w.float(), []
    xv, yv = torch.cat(latents[split:]), torch.cat(states[split:])
    pred = (xv - x_mean) @ w + y_mean
    r2 = 1 - ((pred - yv) ** 2).sum(0) / ((yv - yv.mean(0)) ** 2).sum(0)
    return w.float(), [round(float(v), 3) for v in r2]


class ReadoutDistance:
    """latent L2 + weight * max(0, |W (z - goal)|^2 - margin), per predicted block."""

    def __init__(self, readout: torch.Tensor, weight: float, margin: float) -> None:
        self.readout, self.weight, self.margin = readout, weight, margin

    def __call__(self, z: torch.Tensor, goal: torch.Tensor, metric: str) -> torch.Tensor:
        state = ((z - goal).flatten(-2) @ self.readout).pow(2).sum(-1)
        return latent_distance(z, goal, metric) + self.weight * (state - self.margin).clamp_min(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--env", default="reach")
    parser.add_argument("--checkpoint", default="reach")
    parser.add_argument("--target", default="joint_sincos")
    parser.add_argument("--fit-episodes", type=int, default=200)
    parser.add_argument("--ridge", type=float, default=1.0)
    parser.add_argument("--weights", default="0,0.1")
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--goals", default="uniform,offset")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--num-envs", type=int, default=10)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = mpc.load_world_model(args.checkpoint, torch.device("cpu"))
    latents, states = encoded_states(model, args.data, args.target, args.fit_episodes)
    readout, r2 = fit_readout(latents, states, args.ridge)
    print(f"readout: {len(latents)} episodes, validation R^2 per column {r2}", flush=True)
    rows = []
    for weight in [float(w) for w in args.weights.split(",")]:
        model.distance = ReadoutDistance(readout, weight, args.margin) if weight else None
        for goal in args.goals.split(","):
            for seed in [int(s) for s in args.seeds.split(",")]:
                cfg = load_config("mpc", [f"env={args.env}",
                                          f"checkpoint={args.checkpoint}", f"goal={goal}",
                                          f"seed={seed}", f"episodes={args.episodes}",
                                          f"num_envs={args.num_envs}",
                                          "readout_weight=0"])  # only this script's readout
                m = mpc.evaluate(cfg, model=model, progress=False, log=lambda line: None)
                error = m["metric_names"][0]
                rows.append([f"{weight:g}", f"{args.margin:g}" if weight else "-", goal, seed,
                             f"{100 * m['success_rate']:.0f} %",
                             f"{100 * m['success_any_rate']:.0f} %",
                             f"{m[f'final_{error}_mean']:.3f} / "
                             f"{m[f'final_{error}_median']:.3f}"])
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
    report(f"Readout-weighted energy ({args.checkpoint} model, {args.episodes} episodes per row)",
           ["weight", "margin", "goal", "seed", "success (end)", "success (any step)",
            "final error mean / median (the task's first metric)"], rows,
           notes=f"Readout: ridge {args.ridge} on {len(latents)} recorded episodes' "
                 f"{args.target}, validation R^2 {r2}.", record=not args.no_record)


if __name__ == "__main__":
    main()
