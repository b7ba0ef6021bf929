"""Reproduce the shipped reach world model from scratch with the project's own pipeline.

    python -m jepa_world.build_reach [--out runs/reach_build] [--install]

Runs, as separate commands exactly as a user would type them:
  1. python -m envs.collect --env reach --episodes 200 --out OUT/data    (seeds 0..199)
     python -m envs.collect --env reach --episodes 800 --seed 200 --out OUT/data_extra
  2. python -m jepa_world.pretrain data.paths=[OUT/data/episodes] out_dir=OUT/pretrain
  3. python -m jepa_world.train_ac encoder.checkpoint=OUT/pretrain \
         data.paths=[OUT/data,OUT/data_extra] out_dir=OUT/train_ac
and leaves the world model in OUT/train_ac/world_model. The encoder learns from the first 200
episodes; the action-conditioned predictor trains on all 1000: with 200 its validation error
stays 20% above its training error, and transitions are cheap to record (4 min for 800).
``--install`` copies it into the package (jepa_world/assets/reach), which is what
``WorldModel.load("reach")`` reads. Every step resumes
if interrupted: rerun the same command. ``--encoder reach`` skips step 2 and trains the
predictor on the frozen encoder of an existing world model (the shipped one, or a directory):
pretraining sees only the videos of the first 200 episodes, so the shipped encoder is what
step 2 makes, and new dynamics settings can be tried without pretraining again. Extra
arguments ``pretrain.KEY=VALUE`` and ``train_ac.KEY=VALUE`` are passed on (prefix removed) to
that trainer.
"""

from __future__ import annotations

import argparse
import json
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


def record(folder: Path, episodes: int, seed: int) -> None:
    """Record episodes with seeds ``seed .. seed+episodes-1``; a dataset left incomplete by an
    interrupted build is topped up with the missing seeds."""
    manifest = folder / "manifest.json"
    done = len(json.loads(manifest.read_text())["episodes"]) if manifest.exists() else 0
    if done >= episodes:
        return
    args = ["-m", "envs.collect", "--env", "reach", "--episodes", str(episodes - done)]
    # envs.collect gives episode i the seed --seed + i, also when it appends
    args += ["--out", str(folder), "--seed", str(seed), "--workers", "2"]
    run(f"record {folder.name}", args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jepa_world.build_reach", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="runs/reach_build")
    parser.add_argument("--episodes", type=int, default=200, help="pretraining episodes")
    parser.add_argument(
        "--extra-episodes", type=int, default=800, help="more episodes for the predictor only"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--encoder",
        help="reuse this world model's encoder (e.g. reach) instead of pretraining one",
    )
    parser.add_argument("--install", action="store_true", help="copy into jepa_world/assets")
    args, extra = parser.parse_known_args(argv)
    routed: dict[str, list[str]] = {"pretrain": [], "train_ac": []}
    for item in extra:
        stage, _, override = item.partition(".")
        if stage not in routed or "=" not in override:
            parser.error(f"unrecognised argument {item!r} (use pretrain.KEY=V or train_ac.KEY=V)")
        routed[stage].append(override)
    out = Path(args.out).resolve()
    data, extra = out / "data", out / "data_extra"
    started = time.perf_counter()
    record(data, args.episodes, args.seed)
    if args.extra_episodes > 0:
        record(extra, args.extra_episodes, args.seed + args.episodes)
    dynamics_data = f"[{data},{extra}]" if args.extra_episodes > 0 else f"[{data}]"
    encoder = args.encoder or str(out / "pretrain")
    if args.encoder is None:
        pretrain = ["-m", "jepa_world.pretrain", f"data.paths=[{data}/episodes]"]
        pretrain += [f"out_dir={out / 'pretrain'}", f"seed={args.seed}", *routed["pretrain"]]
        run("pretrain", pretrain)
    train_ac = ["-m", "jepa_world.train_ac", f"encoder.checkpoint={encoder}"]
    train_ac += [f"data.paths={dynamics_data}", f"out_dir={out / 'train_ac'}"]
    run("train_ac", [*train_ac, f"seed={args.seed}", *routed["train_ac"]])
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
