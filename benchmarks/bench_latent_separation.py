"""Does a world model's latent energy tell near poses from far ones? (issue 10 diagnosis)

    python benchmarks/bench_latent_separation.py --env gym:Reacher-v5 [--checkpoint NAME]
        [--pairs 300] [--near 0.1] [--profile] [--no-record]

Renders ``--pairs`` uniform goal states of the task, a copy of each with every joint moved by
at most ``--near`` rad, and a second independent uniform state; encodes all of them with the
world model (and with a freshly initialised encoder of the same architecture, through the same
pooling and standardisation) and prints the energy quantiles of near and far pairs. If far
pairs often score below near ones, planning on that energy cannot succeed whatever the
predictor does; if they never do, failures come from the predictor.

For two-joint arms it also scores each pose against its mirror images (reflected about the
image's axes: (-q1, -q2) and (pi - q1, -q2)): uniform far pairs almost never alias, but a
planner minimising the energy finds the few poses that do, and a pooled embedding can lose
which side of the base the arm is on.

``--profile`` adds the energy against the angle to the goal, one joint at a time (the first
``--pairs`` / 5 poses, each joint moved by up to pi both ways, the median over poses and
directions): a planner that follows the energy can only reach goals from where it still falls
towards them; where it falls again beyond a peak, the pose half a turn away is a local minimum.
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


def energies(model: WorldModel, frames: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The l2 energy of every kind of pair against its base pose."""
    with torch.no_grad():
        z = {k: model.encode(v) for k, v in frames.items()}
    base = z.pop("base")
    # a kind with several variants per base pose holds them variant-major
    return {k: model.energy(base.repeat(len(v) // len(base), 1, 1), v, "l2").numpy()
            for k, v in z.items()}


def angle_profile(model: WorldModel, task, base: np.ndarray, joints: int,
                  deltas: np.ndarray) -> np.ndarray:
    """Median energy of each pose against itself with one joint moved by +-delta:
    [joints, deltas]."""
    medians = np.zeros((joints, len(deltas)))
    with torch.no_grad():
        goal = model.encode(render(task, base)).repeat_interleave(2 * len(deltas), 0)
    for joint in range(joints):
        moved = np.repeat(base[:, None], 2 * len(deltas), 1)
        moved[:, :, joint] += np.concatenate([deltas, -deltas])[None]
        with torch.no_grad():
            z = model.encode(render(task, moved.reshape(-1, base.shape[1])))
        energy = model.energy(goal, z, "l2").numpy()
        by_delta = energy.reshape(len(base), 2, len(deltas))
        medians[joint] = np.median(by_delta, axis=(0, 1))
    return medians


def mirrors(base: np.ndarray) -> np.ndarray:
    """Both reflections of each two-joint pose, stacked: [2N, state]."""
    x_axis, y_axis = base.copy(), base.copy()
    x_axis[:, :2] = np.stack([-base[:, 0], -base[:, 1]], 1)
    y_axis[:, :2] = np.stack([np.pi - base[:, 0], -base[:, 1]], 1)
    return np.concatenate([x_axis, y_axis])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="gym:Reacher-v5")
    parser.add_argument("--checkpoint", default=None, help="world model (default: shipped)")
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--near", type=float, default=0.1, help="rad per joint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true",
                        help="also the energy against the angle to the goal, joint by joint")
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
    mirror_error = None
    if joints == 2:
        mirrored = mirrors(base)
        frames["mirror"] = render(task, mirrored)
        both = np.concatenate([base, base])
        mirror_error = np.abs(wrap_angle(both[:, :2] - mirrored[:, :2])).max(axis=1)
    profile, profiled = None, max(1, args.pairs // 5)
    if args.profile:
        deltas = np.linspace(0, np.pi, 13)
        profile = angle_profile(model, task, base[:profiled], joints, deltas)
    task.close()

    rows = []
    fresh = fresh_like(model.encoder, args.seed)
    for name, encoder in (("trained", model.encoder), ("fresh encoder", fresh)):
        model.encoder = encoder
        scored = energies(model, frames)
        e_near, e_far = scored["near"], scored["far"][far_error > 1.0]
        e_mirror = None if mirror_error is None else scored["mirror"][mirror_error > 1.0]
        rows.append([
            name,
            f"{np.median(e_near):.3f}",
            f"{np.percentile(e_near, 90):.3f}",
            f"{np.percentile(e_far, 5):.3f}",
            f"{np.median(e_far):.3f}",
            f"{100 * np.mean(e_far < np.percentile(e_near, 90)):.1f} %",
            "-" if e_mirror is None else f"{100 * np.mean(e_mirror < np.percentile(e_near, 90)):.1f} %",
        ])
    report(
        f"Latent separation of poses, {args.env} ({args.pairs} pairs, near = {args.near} rad)",
        ["encoder", "near median", "near p90", "far p5", "far median", "far below near p90",
         "mirror below near p90"],
        rows,
        notes="Energy: l2 between standardised pooled latents (the planners' energy); far pairs "
        "are those more than 1 rad apart in some joint; mirror pairs (two-joint arms) a pose and "
        "its reflections about the image axes, more than 1 rad apart. The fresh encoder's latents are "
        "standardised with the trained model's statistics.",
        record=not args.no_record,
    )
    if profile is not None:
        report(
            f"Energy against the angle to the goal, {args.env} (median of {profiled} poses, "
            "both directions)",
            ["joint moved", *(f"{d:.2f}" for d in deltas), "peak at (rad)"],
            [[f"joint {j}", *(f"{e:.3f}" for e in row), f"{deltas[int(np.argmax(row))]:.2f}"]
             for j, row in enumerate(profile)],
            notes="Energy: l2 between the pose's and the moved pose's latents; a peak below pi "
            "means the energy falls again towards the pose half a turn away (a local minimum "
            "for a planner that follows it).",
            record=not args.no_record,
        )


if __name__ == "__main__":
    main()
