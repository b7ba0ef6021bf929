"""Build a task's world model from scratch with the project's own pipeline.

    python -m jepa_world.build --env NAME [--out DIR] [--install] [--encoder MODEL]
        [pretrain.KEY=VALUE ...] [train_ac.KEY=VALUE ...] [probe.KEY=VALUE ...] [readout.steps=N]

The recipe of each task lives in ``configs/build/<name>.yaml`` (``gym:Reacher-v5`` ->
``gym-Reacher-v5.yaml``): which datasets to record, which of them the encoder pretrains on and
which the predictor trains on, and the trainers' overrides. The stages run as separate
commands, exactly as a user would type them:

  1. python -m envs.collect --env NAME --episodes N --seed S --out OUT/<dataset>   (each)
  2. python -m jepa_world.pretrain data.paths=[OUT/<dataset>/episodes,...] out_dir=OUT/pretrain
  3. python -m jepa_world.train_ac encoder.checkpoint=OUT/pretrain data.paths=[...] \\
         out_dir=OUT/train_ac

and leave the world model in OUT/train_ac/world_model. A last stage checks that the model's
latent carries the task's state (its default probe targets, e.g. the T's pose on push):

  4. python -m jepa_world.probe checkpoint=OUT/train_ac/world_model pool=<its latent grid> \
         data.train=[...] json=OUT/probe.json

R^2 per target for the encoder and for a randomly initialised one of the same size goes into
the build summary. Every stage resumes: rerun the same
command after an interruption (datasets are topped up to their recipe's size, the trainers
resume from their last checkpoint). ``--install`` copies the model into the package
(jepa_world/assets/<install_as>), which is what ``WorldModel.load(NAME)`` and
``planners.mpc --env NAME`` read. ``--encoder MODEL`` skips pretraining and starts from the
encoder of an existing world model. A recipe whose train_ac stage says ``encoder.train=true``
builds end to end: the pretrained encoder is the initialisation, trained on with the predictor.
``--random-encoder`` builds the control that says what pretraining buys: the same recipe with
the encoder starting from its random initialisation (pretrain ``train.steps=0``; end to end,
train_ac ``encoder.init=random``), in OUT = runs/build/<env>-random by default. Stage durations are printed and
written to OUT/build.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from jepa_world.training.cli import MAX_SEED, CommandParser


class BuildError(ValueError):
    """A bad recipe or argument; the message is one line."""


@dataclass
class RecordSpec:
    name: str
    episodes: int
    seed: int
    steps: int = 100
    policy: str = "noisy"
    action_scale: float = 1.0


@dataclass
class Recipe:
    env: str
    install_as: str
    record: list[RecordSpec]
    pretrain_data: list[str]
    train_ac_data: list[str]
    pretrain: list[str] = field(default_factory=list)
    train_ac: list[str] = field(default_factory=list)
    probe: list[str] = field(default_factory=lambda: ["data.frame_stride=5"])
    readout: bool = False  # fit a state readout on train_ac_data into the model's folder
    readout_settings: list[str] = field(default_factory=list)  # KEY=VALUE of READOUT_KEYS


def recipe_file(env: str) -> Path:
    return Path(str(resources.files("configs"))) / "build" / f"{env.replace(':', '-')}.yaml"


def known_recipes() -> list[str]:
    folder = Path(str(resources.files("configs"))) / "build"
    names = [OmegaConf.load(path).get("env", path.stem) for path in sorted(folder.glob("*.yaml"))]
    return sorted(str(name) for name in names)


def load_recipe(env: str) -> Recipe:
    """The typed recipe of ``env``, validated once."""
    import envs

    try:
        envs.resolve_env_id(env)
    except envs.UnknownEnvError as exc:
        raise BuildError(str(exc)) from None
    path = recipe_file(env)
    if not path.is_file():
        raise BuildError(
            f"no build recipe for {env!r} ({path} is missing; recipes: {', '.join(known_recipes())})"
        )
    try:
        schema = OmegaConf.structured(Recipe)
        merged = OmegaConf.merge(schema, OmegaConf.load(path))
        recipe: Recipe = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except Exception as exc:
        raise BuildError(f"bad build recipe {path}: {' '.join(str(exc).split())}") from None
    names = [spec.name for spec in recipe.record]
    for group in (recipe.pretrain_data, recipe.train_ac_data):
        missing = sorted(set(group) - set(names))
        if missing:
            raise BuildError(f"{path}: datasets {missing} are not recorded by the recipe")
    if recipe.env != env and envs.resolve_env_id(recipe.env) != envs.resolve_env_id(env):
        raise BuildError(f"{path} is the recipe of {recipe.env!r}, not {env!r}")
    try:
        readout_flags(recipe.readout_settings)
    except BuildError as exc:
        raise BuildError(f"{path}: readout_settings: {exc}") from None
    return recipe


class Stages:
    """Runs each stage as a subprocess and keeps their durations."""

    def __init__(self, out: Path, tag: str = "build") -> None:
        self.out, self.seconds, self.tag = out, {}, tag

    def run(self, step: str, args: list[str], resumes: Path | None = None) -> None:
        """One stage; a build stopped while it runs (Ctrl-C, ``kill -TERM``) stops it too, so
        that the rerun resumes it instead of finding its folder still locked. ``resumes``: the
        stage's run folder, whose checkpoint (if any) it continues from."""
        if resumes is not None and (resumes / "checkpoint.pt").is_file():
            print(f"[{self.tag}] {step}: {resumes} holds a checkpoint: the stage resumes from it "
                  "(a finished one is left as it is)", file=sys.stderr, flush=True)
        print(f"[{self.tag}] {step}: python {' '.join(args)}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, *args])
        try:
            code = child.wait()
        except BaseException:
            stop_child(child)
            raise
        if code != 0:
            raise SystemExit(code)
        self.seconds[step] = round(time.perf_counter() - started, 1)
        print(f"[{self.tag}] {step} done in {self.seconds[step]:.0f} s", file=sys.stderr, flush=True)


def stop_child(child: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if the stage has not stopped after ``grace`` seconds."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


class BuildStopped(Exception):
    """SIGTERM: the running stage is stopped and the build ends, resumable."""


def stop_on_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise BuildStopped(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def record(stages: Stages, env: str, folder: Path, spec: RecordSpec) -> None:
    """Record seeds ``spec.seed ..``; a dataset left incomplete is topped up with the rest."""
    from envs.dataset_format import DatasetError, load_manifest

    done = 0
    if (folder / "manifest.json").exists():
        try:
            done = len(load_manifest(folder)["episodes"])
        except (DatasetError, KeyError, TypeError) as exc:
            raise BuildError(f"{folder}: {' '.join(str(exc).split())} (repair or remove it, "
                             "or build into another --out)") from None
    if done >= spec.episodes:
        print(f"[build] record {spec.name}: {folder} already holds {done} episodes "
              f"(recipe: {spec.episodes}), skipped", file=sys.stderr, flush=True)
        return
    if done:
        print(f"[build] record {spec.name}: {done} of {spec.episodes} episodes recorded, "
              "topping up", file=sys.stderr, flush=True)
    args = ["-m", "envs.collect", "--env", env, "--episodes", str(spec.episodes - done)]
    # envs.collect gives episode i the seed --seed + i, also when it appends
    args += ["--out", str(folder), "--seed", str(spec.seed), "--workers", "2"]
    args += ["--steps", str(spec.steps), "--policy", spec.policy]
    args += ["--action-scale", str(spec.action_scale), "--quiet"]
    stages.run(f"record {spec.name}", args)


def route_overrides(extra: list[str]) -> dict[str, list[str]]:
    """``STAGE.KEY=VALUE`` to each stage; the readout's become its flags (``--KEY VALUE``)."""
    routed: dict[str, list[str]] = {"pretrain": [], "train_ac": [], "probe": [], "readout": []}
    for item in extra:
        stage, _, override = item.partition(".")
        if stage not in routed or "=" not in override:
            raise BuildError(
                f"unrecognised argument {item!r} (use pretrain.KEY=V, train_ac.KEY=V, "
                "probe.KEY=V or readout.KEY=V)"
            )
        if stage == "readout":
            routed[stage] += readout_flags([override])
        else:
            routed[stage].append(override)
    return routed


READOUT_KEYS = ("steps", "weight", "margin")  # what a build may change of the readout stage


def readout_flags(settings: list[str]) -> list[str]:
    """``KEY=VALUE`` readout settings -> ``python -m jepa_world.readout`` flags."""
    flags = []
    for item in settings:
        key, equals, value = item.partition("=")
        if key not in READOUT_KEYS:
            raise BuildError(f"unknown readout setting {key!r} (known: "
                             f"{', '.join(READOUT_KEYS)})")
        if not equals:
            raise BuildError(f"readout setting {item!r} needs a value ({key}=VALUE)")
        flags += [f"--{key}", value]
    return flags


# --quick: a few minutes for the whole pipeline on a laptop CPU (the recipe's stage settings
# stay; these shorten them). Stage overrides given on the command line still win.
QUICK_EPISODES, QUICK_ACTIONS = 4, 30
QUICK = {
    "pretrain": ["train.steps=20", "train.warmup_steps=2", "train.checkpoint_every=10"],
    "train_ac": ["train.steps=20", "train.warmup_steps=2", "train.eval_every=10",
                 "train.checkpoint_every=10", "train.log_every=5", "train.batch_size=8",
                 "train.calibration_batches=2"],
    "probe": ["probe.steps=20"],
    "readout": ["--steps", "20"],
}


def build(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    recipe = load_recipe(args.env)
    routed = route_overrides(extra)
    if args.random_encoder:
        if args.encoder or args.install:
            raise BuildError("--random-encoder builds a control: it takes neither --encoder "
                             "nor --install")
        routed["pretrain"] += ["train.steps=0", "train.warmup_steps=0"]
    if args.quick:  # every stage for a few steps: checks the pipeline, not a model to use
        routed["pretrain"] = [*QUICK["pretrain"], *routed["pretrain"]]
        routed["train_ac"] = [*QUICK["train_ac"], *routed["train_ac"]]
        routed["probe"] = [*QUICK["probe"], *routed["probe"]]
        routed["readout"] = [*QUICK["readout"], *routed["readout"]]
    suffix = ("-random" if args.random_encoder else "") + ("-quick" if args.quick else "")
    out = Path(args.out or f"runs/build/{args.env.replace(':', '-')}{suffix}").resolve()
    videos = ",".join(str(out / name / "episodes") for name in recipe.pretrain_data)
    data = ",".join(str(out / name) for name in recipe.train_ac_data)
    pretrain = ["-m", "jepa_world.pretrain", f"data.paths=[{videos}]"]
    pretrain += [f"out_dir={out / 'pretrain'}", f"seed={args.seed}", *recipe.pretrain,
                 *routed["pretrain"]]
    encoder = args.encoder or str(out / "pretrain")
    train_ac = ["-m", "jepa_world.train_ac", f"encoder.checkpoint={encoder}"]
    train_ac += [f"data.paths=[{data}]", f"out_dir={out / 'train_ac'}", f"seed={args.seed}",
                 *recipe.train_ac, *routed["train_ac"]]
    preflight("pretrain", pretrain[2:])
    if preflight("train_ac", train_ac[2:]).encoder.train and args.random_encoder:
        train_ac.append("encoder.init=random")  # end to end: the encoder starts untrained
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(out)
    started = time.perf_counter()
    for spec in recipe.record:
        episodes = args.episodes or (QUICK_EPISODES if args.quick else None)
        if episodes is not None:  # a quick trial of the whole pipeline
            spec.episodes = min(spec.episodes, episodes)
        if args.steps is not None or args.quick:
            spec.steps = args.steps or QUICK_ACTIONS
        record(stages, args.env, out / spec.name, spec)
    if args.encoder is None:
        stages.run("pretrain", pretrain, resumes=out / "pretrain")
    stages.run("train_ac", train_ac, resumes=out / "train_ac")
    model = out / "train_ac" / "world_model"
    if recipe.readout and (model / "readout" / "config.json").is_file():
        print(f"[build] readout: {model / 'readout'} is already fitted, skipped",
              file=sys.stderr, flush=True)
    elif recipe.readout:
        datasets = [str(out / name) for name in recipe.train_ac_data]
        stages.run("readout", ["-m", "jepa_world.readout", "--env", args.env, "--data",
                               *datasets, "--world-model", str(model),
                               "--out", str(model / "readout"), "--seed", str(args.seed),
                               *readout_flags(recipe.readout_settings), *routed["readout"]])
    probe = probe_model(stages, model, data, out / "probe.json", args.seed,
                        [*recipe.probe, *routed["probe"]])
    summary = {
        "env": args.env,
        "model": str(model),
        "seconds": round(time.perf_counter() - started, 1),
        "stage_seconds": stages.seconds,
        "encoder": "random (untrained)" if args.random_encoder else (args.encoder or "pretrained"),
        "probe": probe,
        "command": " ".join(["python -m jepa_world.build", *sys.argv[1:]]),
    }
    from jepa_world.files import write_json_atomic

    write_json_atomic(out / "build.json", summary)
    print(f"[build] world model in {model} after {summary['seconds']:.0f} s", file=sys.stderr)
    for encoder_kind, scores in probe["r2"].items():
        listed = ", ".join(f"{name} {value:.3f}" for name, value in scores.items())
        print(f"[build] probe R^2 of the latent, {encoder_kind} encoder: {listed}",
              file=sys.stderr)
    if args.install:
        target = install(model, recipe.install_as)
        print(f"[build] installed into {target}", file=sys.stderr)
    return summary


def preflight(stage: str, overrides: list[str]) -> Any:
    """Check a stage's settings before any stage runs: a bad train_ac override must not
    surface only after hours of recording and pretraining. Returns the typed config."""
    from jepa_world.training.cli import UserError, load_config, typed_config

    if stage == "pretrain":
        from jepa_world.schemas.pretrain import PretrainConfig as schema
    else:
        from jepa_world.schemas.train_ac import TrainACConfig as schema
    try:
        return typed_config(schema, load_config(stage, overrides))
    except UserError as exc:
        raise BuildError(f"{stage}: {exc}") from None


def probe_model(
    stages: Stages, model: Path, data: str, report: Path, seed: int, overrides: list[str]
) -> dict[str, Any]:
    """Frozen-probe R^2 of the task's default targets from the model's own latent grid."""
    config = json.loads((model / "config.json").read_text())
    # a stacked cell holds every token it covers, so the probe reads the full grid then
    pool = config.get("pool") if config.get("pool_mode", "mean") == "mean" else None
    args = ["-m", "jepa_world.probe", f"checkpoint={model}", f"data.train=[{data}]"]
    args += [f"pool=[{pool[0]},{pool[1]}]" if pool else "pool=null", f"json={report}"]
    args += [f"seed={seed}", "progress=false"]
    stages.run("probe", [*args, *overrides])
    results = json.loads(report.read_text())["results"]
    # "model": the world model's own encoder; "random": a fresh one of the same architecture
    results = {"random" if kind == "random" else "model": r for kind, r in results.items()}
    return {
        "pool": pool,
        "r2": {kind: result["r2"] for kind, result in results.items()},
        "mean_r2": {kind: result["mean_r2"] for kind, result in results.items()},
    }


def install(model: Path, name: str) -> Path:
    """Copy a world model into the package (jepa_world/assets/NAME), replacing the old one
    (and the distilled student kept beside it, which read the old model's latents)."""
    from jepa_world.files import replace_folder

    target = Path(str(resources.files("jepa_world"))) / "assets" / name
    return replace_folder(target, lambda staging: shutil.copytree(model, staging,
                                                                  dirs_exist_ok=True))


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        prog="python -m jepa_world.build", description=__doc__.splitlines()[0],
        epilog="Stage settings pass on as pretrain.KEY=V, train_ac.KEY=V, probe.KEY=V, "
        "readout.KEY=V (python -m jepa_world.pretrain --help lists them). docs: docs/building.md"
    )
    parser.add_argument("--env", required=True, help="task name, e.g. reach or gym:Reacher-v5")
    parser.add_argument("--out", help="build folder (default runs/build/<env>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage")
    parser.add_argument(
        "--encoder", help="reuse this world model's encoder instead of pretraining one"
    )
    parser.add_argument("--random-encoder", action="store_true",
                        help="the control: the same recipe on an untrained encoder")
    parser.add_argument("--install", action="store_true", help="copy into jepa_world/assets")
    parser.add_argument("--episodes", type=int, help="at most this many episodes per dataset "
                        "(a quick trial, not the recipe)")
    parser.add_argument("--steps", type=int, help="actions per recorded episode (a quick trial)")
    parser.add_argument("--quick", action="store_true",
                        help="a trial of the whole pipeline in minutes (4 short episodes per "
                        "dataset, 20 steps per trainer) into runs/build/<env>-quick: checks "
                        "that everything runs, builds no model worth planning with")
    args, extra = parser.parse_known_args(argv)
    if not 0 <= args.seed <= MAX_SEED:  # checked before any stage records or trains
        print(f"error: --seed must be an integer in [0, {MAX_SEED}], got {args.seed}",
              file=sys.stderr)
        return 2
    for key in ("episodes", "steps"):
        value = getattr(args, key)
        if value is not None and value < 1:
            print(f"error: --{key} must be positive, got {value}", file=sys.stderr)
            return 2
    return run_stages(lambda: build(args, extra))


def run_stages(work: Any, errors: tuple[type[Exception], ...] = (BuildError,)) -> int:
    """Run a command made of stages under the commands' contract: bad input is one ``error:``
    line (exit 2); SIGTERM or Ctrl-C stops the running stage and says how to resume (130)."""
    stop_on_sigterm()
    try:
        work()
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (BuildStopped, KeyboardInterrupt):
        print("interrupted: the running stage was stopped; rerun the same command to resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
