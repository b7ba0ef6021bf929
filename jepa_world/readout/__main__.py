"""Fit a state readout on a world model's latents of recorded episodes.

    python -m jepa_world.readout --env reach --data DIR [DIR ...] [--world-model reach]
        [--out DIR | --install] [--steps 4000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import envs
from jepa_world.data.episodes import EpisodeDataset
from jepa_world.data.fingerprint import refuse_repeated_paths
from jepa_world.files import replace_folder, write_json_atomic
from jepa_world.model_files import READOUT_DIR
from jepa_world.provenance import git_commit
from jepa_world.readout.model import ReadoutConfig, fit_readout, periodic_coordinates
from jepa_world.training.cli import CommandParser, UserError, check_seed, run_command
from jepa_world.training.run_dir import own_out_dir
from jepa_world.world_model import WorldModel, resolve_model_dir


def main(argv: list[str]) -> int:
    parser = CommandParser(prog="python -m jepa_world.readout",
                                     description=__doc__.splitlines()[0],
                                     epilog="docs: docs/planning.md (state readout)")
    parser.add_argument("--env", required=True, help="task name, e.g. reach")
    parser.add_argument("--data", nargs="+", required=True, help="recorded datasets of the task")
    parser.add_argument("--world-model", help="directory or shipped name (default: the task's)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="write the readout folder here")
    where.add_argument("--install", action="store_true",
                       help="put it inside the world model's folder (planners.mpc uses it)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight", type=float, default=ReadoutConfig.weight,
                        help="the planners' default weight of the readout term")
    parser.add_argument("--margin", type=float, default=ReadoutConfig.margin,
                        help="squared readout distance under which the term is off")
    args = parser.parse_args(argv)
    check_seed(args.seed, "--seed")
    if args.steps < 1:
        raise UserError(f"--steps must be a positive integer, got {args.steps}")
    for flag in ("weight", "margin"):
        value = getattr(args, flag)
        if not math.isfinite(value) or value < 0:
            raise UserError(f"--{flag} must be finite and >= 0, got {value}")
    try:
        name = args.world_model or envs.short_name(args.env)
        task = envs.make_task(args.env, image_size=64)
    except (envs.UnknownEnvError, ValueError) as exc:
        raise UserError(" ".join(str(exc).split())) from None
    periodic = periodic_coordinates(task)
    task.close()
    refuse_repeated_paths(args.data, "--data")
    try:
        model = WorldModel.load(name)
        datasets = [EpisodeDataset(Path(d)) for d in args.data]
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(" ".join(str(exc).split())) from None
    wanted = envs.resolve_env_id(args.env)
    for data in datasets:
        if data.env_id != wanted:
            raise UserError(f"{data.root} records {data.env_id}, not {args.env} ({wanted})")
        if model.config.env_id and data.env_id != model.config.env_id:
            raise UserError(f"{data.root} records {data.env_id}, the world model "
                            f"{model.config.env_id}")
    if args.install:
        readout = _fit(args, model, datasets, periodic, argv)
        target = replace_folder(resolve_model_dir(name) / READOUT_DIR, readout.fill)
    else:  # one writer at a time: a second readout into the same folder is refused at once
        with own_out_dir(args.out, True, "another jepa_world.readout") as target:
            readout = _fit(args, model, datasets, periodic, argv)
            readout.fill(target)
    validation = readout.readout.config.validation
    print(f"state readout: {target} (validation error per qpos coordinate: median "
          f"{validation['median']}, p90 {validation['p90']})")
    return 0


class _Fitted:
    """A fitted readout and where it came from, written into a folder by ``fill``."""

    def __init__(self, readout: Any, provenance: dict[str, Any]) -> None:
        self.readout, self.provenance = readout, provenance

    def fill(self, folder: Path) -> None:
        self.readout.save(folder)
        write_json_atomic(folder / "provenance.json", self.provenance, sort_keys=False)


def _fit(args: argparse.Namespace, model: Any, datasets: list[Any], periodic: list[bool],
         argv: list[str]) -> _Fitted:
    try:
        readout = fit_readout(model, datasets, periodic, args.steps, args.seed)
        readout.config.weight, readout.config.margin = args.weight, args.margin
    except (ValueError, FloatingPointError) as exc:
        raise UserError(" ".join(str(exc).split())) from None
    provenance = {"git_commit": git_commit(), "command": ["python", "-m", "jepa_world.readout",
                                                          *argv],
                  "data": [{"path": str(d.root), "episodes": len(d),
                            "seeds": [min(d.seeds), max(d.seeds)]} for d in datasets]}
    return _Fitted(readout, provenance)


if __name__ == "__main__":
    run_command(main, interrupted="nothing was written")
