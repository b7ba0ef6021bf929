"""Pretraining speed of the CPU default: trainer clips/s and peak memory, and how fast the
data loader alone delivers clips (so one sees whether decoding or the model is the bottleneck).

    python benchmarks/bench_pretrain.py --corpus data/reach/episodes [--steps 60] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import report  # noqa: E402
from jepa_world.pretrain import build_loader, train  # noqa: E402
from jepa_world.schemas.pretrain import PretrainConfig  # noqa: E402
from jepa_world.training.cli import load_config, typed_config  # noqa: E402
from jepa_world.training.runtime import setup_runtime  # noqa: E402


def loader_clips_per_second(cfg, steps: int) -> float:
    rt = setup_runtime("cpu")
    loader, _ = build_loader(cfg, rt, 0)
    batches = iter(loader)
    next(batches)  # worker start-up is not throughput
    start, clips = time.perf_counter(), 0
    for _, video in zip(range(steps), batches, strict=False):
        clips += video.shape[0]
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f"data.paths=[{args.corpus}]",
            f"out_dir={tmp}/run",
            f"train.steps={args.steps}",
            "train.tensorboard=false",
            f"train.checkpoint_every={args.steps}",
        ]
        cfg = typed_config(PretrainConfig, load_config("pretrain", overrides))
        summary = train(cfg, setup_runtime("cpu"))
        logs = [json.loads(line) for line in Path(tmp, "run", "log.jsonl").read_text().splitlines()]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steady = [r["clips_per_s"] for r in logs[1:]] or [summary["clips_per_s"]]
    wait = sum(r["data_wait_frac"] for r in logs[1:]) / max(len(logs) - 1, 1)
    loader = loader_clips_per_second(cfg, args.steps)
    rows = [
        [
            "trainer (micro, 64 px, 8 frames, batch 16)",
            f"{sum(steady) / len(steady):.1f}",
            f"{peak_mb:.0f}",
            f"{100 * wait:.1f} %",
        ],
        [f"data loader alone ({cfg.train.num_workers} workers)", f"{loader:.1f}", "", ""],
    ]
    report(
        "Pretraining speed, CPU default",
        ["what", "clips/s", "peak RSS MB", "time waiting for data"],
        rows,
        notes="The trainer needs far fewer clips/s than the loader delivers: the model, not "
        "decoding, bounds CPU pretraining.",
        record=not args.no_record,
    )


if __name__ == "__main__":
    main()
