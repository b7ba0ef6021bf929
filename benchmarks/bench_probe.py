"""Frozen attentive probe on reach: R^2 of recorded states from a pretrained vs a random encoder.

    python benchmarks/bench_probe.py --checkpoint runs/pretrain --dataset data/reach \
        [--steps 1000] [--seed 0] [--frame-stride 1] [--no-record] [key=value ...]

The gap between the two rows is what self-supervised pretraining adds over the architecture
and the probe alone. Trailing ``key=value`` items are passed to ``python -m jepa_world.probe``'s
config (e.g. ``targets=[joint_sincos,fingertip,qvel]`` or ``data.frames_per_clip=2``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import report  # noqa: E402
from jepa_world.probe import evaluate  # noqa: E402
from jepa_world.training.cli import UserError, load_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/pretrain", help="a pretrain out_dir")
    parser.add_argument("--dataset", default="data/reach", help="a reach dataset folder")
    parser.add_argument("--steps", type=int, default=1000, help="probe training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame-stride", type=int, default=1, help="probe every k-th frame")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-record", action="store_true", help="print only, no RESULTS.md")
    parser.add_argument("overrides", nargs="*", help="extra probe config key=value items")
    args = parser.parse_args()

    overrides = [
        "task=regression",
        f"checkpoint={args.checkpoint}",
        f"data.train={args.dataset}",
        f"probe.steps={args.steps}",
        f"seed={args.seed}",
        f"data.frame_stride={args.frame_stride}",
        f"device={args.device}",
        "compare_random=true",
        *args.overrides,
    ]
    started = time.perf_counter()
    try:
        summary = evaluate(load_config("probe", overrides))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    seconds = time.perf_counter() - started

    pre, rnd = summary["results"]["pretrained"], summary["results"]["random"]
    rows = [["mean (val)", pre["mean_r2"], rnd["mean_r2"], pre["mean_r2"] - rnd["mean_r2"]]]
    for target in summary["targets"]:
        a, b = pre["r2"][target], rnd["r2"][target]
        rows.append([target, a, b, a - b])
    rows.append(["mean (train)", pre["train_mean_r2"], rnd["train_mean_r2"],
                 pre["train_mean_r2"] - rnd["train_mean_r2"]])
    enc, data = summary["encoder"], summary["data"]
    notes = (
        f"Encoder {enc['size']} ({enc['embed_dim']} wide, {enc['depth']} deep) from "
        f"`{summary['checkpoint']}`, frozen; {enc['tokens_per_sample']} tokens per "
        f"{enc['resolution']} px frame. Attentive probe (one query, one cross-attention block, "
        f"LayerNorm + Linear), {summary['probe']['steps']} steps, batch "
        f"{summary['probe']['batch_size']}, lr {summary['probe']['lr']}, seed {summary['seed']}. "
        f"{data['train_samples']} train / {data['val_samples']} val frames from "
        f"{len(data['train_episodes'])} / {len(data['val_episodes'])} episodes (whole episodes "
        f"held out). The random encoder has the same architecture, freshly initialised. "
        f"Features {summary['feature_seconds']:.0f} s, total {seconds:.0f} s."
    )
    report("Frozen probe on reach: R^2 of recorded states, pretrained vs random encoder",
           ["target", "pretrained R^2", "random R^2", "gap"], rows, notes=notes,
           record=not args.no_record)


if __name__ == "__main__":
    main()
