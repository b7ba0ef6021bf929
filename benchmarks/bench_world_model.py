"""World-model quality and speed: prediction error vs rollout length, rollout throughput.

    python benchmarks/bench_world_model.py --models reach runs/train_ac/world_model \
        --dataset data/reach_eval [--horizon 8] [--no-record]

Prediction error: L1 between rolled-out latents and the encoded true frames of held-out
episodes, per rollout step, next to the copy-the-current-frame baseline (predict no change).
Throughput: sampled action sequences per second through ``rollout`` (horizon 3 action blocks,
the default planning horizon) for batch sizes 1..512.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import report  # noqa: E402
from jepa_world import WorldModel  # noqa: E402
from jepa_world.data import EpisodeDataset  # noqa: E402


@torch.no_grad()
def prediction_errors(
    model: WorldModel, data: EpisodeDataset, horizon: int, starts_per_episode: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    fs = model.frameskip
    errors, copies = [], []
    for ep in range(len(data)):
        length = int(data.lengths[ep])
        span = horizon * fs
        if length < span:
            continue
        starts = np.linspace(0, length - span, starts_per_episode).astype(int)
        frames = torch.from_numpy(data.frames(ep))
        arrays = data.arrays(ep)
        latents = model.encode(frames.unsqueeze(0))[0]
        for s in starts:
            idx = s + fs * np.arange(horizon + 1)
            truth = latents[idx]
            actions = torch.from_numpy(arrays["actions"][s : s + span]).view(1, horizon, fs, -1)
            proprio = (
                torch.from_numpy(arrays["proprio"][s]).view(1, -1) if model.proprio_dim else None
            )
            rolled = model.rollout(truth[:1], actions, proprio)[0]
            errors.append((rolled - truth[1:]).abs().mean(dim=(-2, -1)).numpy())
            copies.append((truth[:1] - truth[1:]).abs().mean(dim=(-2, -1)).numpy())
    return np.mean(errors, axis=0), np.mean(copies, axis=0)


@torch.no_grad()
def throughput(model: WorldModel, batch: int, horizon: int = 3, repeats: int = 5) -> float:
    k, d = model.latent_shape
    z = torch.randn(batch, k, d)
    actions = torch.rand(batch, horizon, model.frameskip, model.action_dim) * 2 - 1
    proprio = torch.zeros(batch, model.proprio_dim) if model.proprio_dim else None
    model.rollout(z, actions, proprio)
    start = time.perf_counter()
    for _ in range(repeats):
        model.rollout(z, actions, proprio)
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["reach"])
    parser.add_argument("--dataset", required=True, help="held-out episodes (envs.collect)")
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256, 512])
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = EpisodeDataset(args.dataset)
    err_rows, speed_rows = [], []
    for name in args.models:
        model = WorldModel.load(name)
        errors, copies = prediction_errors(model, data, args.horizon)
        for h, (e, c) in enumerate(zip(errors, copies, strict=True), start=1):
            err_rows.append([name, h, h * model.frameskip, f"{e:.4f}", f"{c:.4f}", f"{e / c:.2f}"])
        for batch in args.batches:
            speed_rows.append([name, batch, f"{throughput(model, batch):.0f}"])
    record = not args.no_record
    report(
        "World model: latent prediction error vs rollout length",
        ["model", "blocks", "env steps", "L1 model", "L1 copy baseline", "ratio"],
        err_rows,
        notes=f"Held-out episodes: {data.root} ({len(data)} episodes, seeds "
        f"{min(data.seeds)}-{max(data.seeds)}).",
        record=record,
    )
    report(
        "World model: rollout throughput (horizon 3 blocks, CPU)",
        ["model", "batch", "sequences/s"],
        speed_rows,
        record=record,
    )


if __name__ == "__main__":
    main()
