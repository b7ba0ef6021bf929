"""Does a world model's latent energy tell near poses from far ones? (issue 10 diagnosis)

    python benchmarks/bench_latent_separation.py --env gym:Reacher-v5 [--checkpoint NAME]
        [--pairs 300] [--near 0.1] [--no-record]

Renders ``--pairs`` uniform goal states of the task, a copy of each with every joint moved by
at most ``--near`` rad, and a second independent uniform state; encodes all of them with the
world model (and with a freshly initialised encoder of the same architecture, through the same
pooling and standardisation) and prints the energy quantiles of near and far pairs. If far
pairs often score below near ones, planning on that energy cannot succeed whatever the
predictor does; if they never do, failures come from the predictor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402  (sets up headless rendering before anything else touches GL)
from benchmarks.results import report  # noqa: E402
from envs.task import wrap_angle  # noqa: E402
from jepa_world import WorldModel  # noqa: E402
from jepa_world.encoders import fresh_like  # noqa: E402


def render(task, states: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([task.render_state(q) for q in states]))


def energies(model: WorldModel, frames: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        z = {k: model.encode(v) for k, v in frames.items()}
        near = model.energy(z["base"], z["near"], "l2").numpy()
        far = model.energy(z["base"], z["far"], "l2").numpy()
    return near, far


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="gym:Reacher-v5")
    parser.add_argument("--checkpoint", default=None, help="world model (default: shipped)")
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--near", type=float, default=0.1, help="rad per joint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = WorldModel.load(args.checkpoint or args.env)
    task = envs.make_task(args.env, image_size=model.image_size)
    task.reset(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    start = task.data.qpos.copy()  # the task draws its goals with its own seeded generator
    base = np.stack([task.sample_uniform_goal(start) for _ in range(args.pairs)]).astype(float)
    joints = len(task.action_space.low)
    near = base.copy()
    near[:, :joints] += rng.uniform(-args.near, args.near, (args.pairs, joints))
    far = np.stack([task.sample_uniform_goal(start) for _ in range(args.pairs)]).astype(float)
    far_error = np.abs(wrap_angle(base[:, :joints] - far[:, :joints])).max(axis=1)
    frames = {"base": render(task, base), "near": render(task, near), "far": render(task, far)}
    task.close()

    rows = []
    fresh = fresh_like(model.encoder, args.seed)
    for name, encoder in (("trained", model.encoder), ("fresh encoder", fresh)):
        model.encoder = encoder
        e_near, e_far = energies(model, frames)
        e_far = e_far[far_error > 1.0]
        rows.append([
            name,
            f"{np.median(e_near):.3f}",
            f"{np.percentile(e_near, 90):.3f}",
            f"{np.percentile(e_far, 5):.3f}",
            f"{np.median(e_far):.3f}",
            f"{100 * np.mean(e_far < np.percentile(e_near, 90)):.1f} %",
        ])
    report(
        f"Latent separation of poses, {args.env} ({args.pairs} pairs, near = {args.near} rad)",
        ["encoder", "near median", "near p90", "far p5", "far median", "far below near p90"],
        rows,
        notes="Energy: l2 between standardised pooled latents (the planners' energy); far pairs "
        "are those more than 1 rad apart in some joint. The fresh encoder's latents are "
        "standardised with the trained model's statistics.",
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
