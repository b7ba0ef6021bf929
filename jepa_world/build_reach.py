"""Reproduce the shipped reach world model from scratch with the project's own pipeline.

    python -m jepa_world.build_reach [--out runs/reach_build] [--install]

Runs, as separate commands exactly as a user would type them:
  1. python -m envs.collect --env reach --episodes 200 --out OUT/data    (seeds 0..199)
  2. python -m jepa_world.pretrain data.paths=[OUT/data/episodes] out_dir=OUT/pretrain
  3. python -m jepa_world.train_ac encoder.checkpoint=OUT/pretrain data.paths=[OUT/data] \
         out_dir=OUT/train_ac
and leaves the world model in OUT/train_ac/world_model. ``--install`` copies it into the package
(jepa_world/assets/reach), which is what ``WorldModel.load("reach")`` reads. Every step resumes
if interrupted: rerun the same command. Extra arguments ``pretrain.KEY=VALUE`` and
``train_ac.KEY=VALUE`` are passed on (prefix removed) to that trainer.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path


def run(step: str, args: list[str]) -> None:
    print(f"[build_reach] {step}: python {' '.join(args)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args])
    if result.returncode != 0:
        sys.exit(result.returncode)
    print(f"[build_reach] {step} done in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jepa_world.build_reach", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="runs/reach_build")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--install", action="store_true", help="copy into jepa_world/assets")
    args, extra = parser.parse_known_args(argv)
    routed: dict[str, list[str]] = {"pretrain": [], "train_ac": []}
    for item in extra:
        stage, _, override = item.partition(".")
        if stage not in routed or "=" not in override:
            parser.error(f"unrecognised argument {item!r} (use pretrain.KEY=V or train_ac.KEY=V)")
        routed[stage].append(override)
    out = Path(args.out).resolve()
    data = out / "data"
    started = time.perf_counter()
    if not (data / "manifest.json").exists():
        run(
            "record",
            [
                "-m",
                "envs.collect",
                "--env",
                "reach",
                "--episodes",
                str(args.episodes),
                "--out",
                str(data),
                "--seed",
                str(args.seed),
            ],
        )
    run(
        "pretrain",
        [
            "-m",
            "jepa_world.pretrain",
            f"data.paths=[{data}/episodes]",
            f"out_dir={out / 'pretrain'}",
            f"seed={args.seed}",
            *routed["pretrain"],
        ],
    )
    run(
        "train_ac",
        [
            "-m",
            "jepa_world.train_ac",
            f"encoder.checkpoint={out / 'pretrain'}",
            f"data.paths=[{data}]",
            f"out_dir={out / 'train_ac'}",
            f"seed={args.seed}",
            *routed["train_ac"],
        ],
    )
    model = out / "train_ac" / "world_model"
    print(f"[build_reach] world model in {model} after {time.perf_counter() - started:.0f} s")
    if args.install:
        target = Path(str(resources.files("jepa_world"))) / "assets" / "reach"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model, target)
        print(f"[build_reach] installed into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
