"""What video buys a world model: planning success against the share of labelled episodes.

World models are trained on a fraction of the action-labelled episodes, from a V-JEPA
initialisation, a random one and a pixel-reconstruction one, and plan on held-out episodes.

    python -m jepa_world.study label-efficiency --env NAME [--episodes 400]
        [--fractions 0.05,0.1,0.25,1] [--subsets 3] [--inits vjepa,random,pixels]
        [--eval-episodes 20] [--report] [--video DIR ...] [--variant "NAME=INIT KEY=V ..." ...]
        [pretrain.KEY=V ...] [train_ac.KEY=V ...] [mpc.KEY=V ...]

Stages, each as the command a user would type, each skipped when a rerun finds it done:

  1. record the pool: the task's build recipe's training datasets, scaled to --episodes
  2. pretrain on the pool's video (and --video), no actions: V-JEPA (vjepa), masked pixel
     reconstruction (pixels, same steps and data) and, for random, the architecture alone
  3. for every fraction, --subsets random subsets of the pool (the whole pool once at 1), and
     every initialisation: python -m jepa_world.train_ac end to end on that subset, same
     steps and settings for all; a --variant is one more row, an initialisation's
     pretraining fine-tuned with its own train_ac settings (a lower encoder learning rate,
     a frozen warm-up), or with pretrain.KEY=V settings its own pretraining run, beside the
     plain rows
  4. plan with every model on the same held-out episodes (python -m planners.mpc, evaluation
     seeds, which recording never uses); another --eval-episodes or --eval-seed is another
     evaluation of the same models, kept beside the first
  5. the table (results.md, results.json) and the plot (label-efficiency.png): success at the
     end of the budget against the fraction, per initialisation; at any step beside it.
     Rewritten after every model from the models evaluated so far; --report writes them
     alone, running nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jepa_world.build import (
    BuildError,
    RecordSpec,
    Stages,
    load_recipe,
    preflight,
    record,
    run_stages,
)
from jepa_world.files import write_json_atomic
from jepa_world.study.report import write_report
from jepa_world.study.subsets import (
    Subset,
    SubsetError,
    draw_subsets,
    parse_fractions,
    pool_episodes,
    subset_folders,
    write_subset,
)
from jepa_world.training.cli import MAX_SEED, CommandParser
from planners.episodes import MAX_EVAL_SEED

# what each initialisation's pretraining stage runs on the pool's video
INITS = {
    "vjepa": ["objective=features"],
    "pixels": ["objective=pixels"],
    "random": ["train.steps=0", "train.warmup_steps=0"],  # the architecture, untrained
}
# The end-to-end recipe (benchmarks/RESULTS.md, issue 16) at half its batch. 2000 steps,
# not fewer: at 500 the models trained on the whole pool had seen each window less than once
# and failed to plan whatever their initialisation (RESULTS.md, "What video buys a world
# model"). About 16 minutes per model on a 2-core CPU: a full study spans several sessions.
TRAIN_AC = ["encoder.train=true", "model.predictor.embed_dim=192", "model.predictor.depth=6",
            "model.predictor.num_heads=4", "model.predictor.decoder_width=0", "train.lr=3e-4",
            "train.steps=2000", "train.batch_size=32", "train.warmup_steps=50",
            "train.eval_every=500", "train.tensorboard=false"]
MPC = ["num_envs=10"]  # the held-out episodes planned side by side: the same plans, sooner
STAGE_PREFIXES = ("pretrain", "train_ac", "mpc")
STATE = "stages.json"
ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Arm:
    """One row of the table: the pretraining its world models start from (``init``), the
    train_ac settings only its world models get (none for a plain initialisation) and the
    pretraining settings only its own pretraining run gets (none: it shares ``init``'s)."""

    name: str
    init: str
    settings: tuple[str, ...] = ()
    pretrain_settings: tuple[str, ...] = ()

    @property
    def pretraining(self) -> str:
        """The pretraining run (a folder under pretrain/) its world models start from."""
        return self.name if self.pretrain_settings else self.init


@dataclass
class Study:
    env: str
    out: Path
    seed: int
    eval_episodes: int
    eval_seed: int
    arms: list[Arm]
    overrides: dict[str, list[str]]
    video: list[str]  # more video for pretraining, beside the pool's

    @property
    def inits(self) -> list[str]:
        """The plain initialisations the arms start from, each once."""
        return list(dict.fromkeys(arm.init for arm in self.arms))

    @property
    def pretrainings(self) -> dict[str, Arm]:
        """Each pretraining run the arms need, once: its folder name -> the arm that says how
        (its initialisation and own pretraining settings)."""
        runs: dict[str, Arm] = {}
        for arm in self.arms:
            runs.setdefault(arm.pretraining, arm if arm.pretrain_settings else Arm(arm.init,
                                                                                   arm.init))
        return runs


def parse_inits(text: str) -> list[str]:
    """'vjepa,random' -> ['vjepa', 'random']; 'none' -> [] (only the --variant rows: a lever
    measured against plain rows an earlier run already holds)."""
    if text.strip() == "none":
        return []
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in INITS]
    if unknown or not names:
        raise SubsetError(f"unknown initialisation {unknown[0] if unknown else text!r} "
                          f"(known: {', '.join(INITS)}, or none)")
    return list(dict.fromkeys(names))


def parse_variant(text: str) -> Arm:
    """'vjepa-lr0.1=vjepa encoder.lr_scale=0.1' -> Arm('vjepa-lr0.1', 'vjepa', (...));
    ``pretrain.KEY=V`` settings give the variant its own pretraining run."""
    head, *settings = text.split() or [""]
    name, _, init = head.partition("=")
    if not ARM_NAME.fullmatch(name) or not init:
        raise SubsetError(f"--variant takes 'NAME=INIT KEY=V ...' (NAME of letters, digits, "
                          f"'.', '_', '-'), got {text!r}")
    if init not in INITS:
        raise SubsetError(f"--variant {name}: unknown initialisation {init!r} "
                          f"(known: {', '.join(INITS)})")
    if not settings or any("=" not in item for item in settings):
        raise SubsetError(f"--variant {name}: give its train_ac settings as KEY=V after "
                          f"'{head}', got {text!r}")
    pretrain = tuple(item.removeprefix("pretrain.") for item in settings
                     if item.startswith("pretrain."))
    if pretrain and init == "random":
        raise SubsetError(f"--variant {name}: the random initialisation has no pretraining to "
                          "set")
    return Arm(name, init, tuple(item for item in settings if not item.startswith("pretrain.")),
               pretrain)


def make_arms(inits: list[str], variants: list[str]) -> list[Arm]:
    extra = [parse_variant(text) for text in variants]
    if not inits and not extra:
        raise SubsetError("--inits none leaves no row: give a --variant")
    names = [*INITS, *(arm.name for arm in extra)]  # an init's folders are its own, chosen or not
    clash = next((name for name in names if names.count(name) > 1), None)
    if clash is not None:
        raise SubsetError(f"--variant {clash}: the name is taken (initialisations and variants "
                          "need distinct names)")
    return [Arm(init, init) for init in inits] + extra


def route(extra: list[str]) -> dict[str, list[str]]:
    """``pretrain.KEY=V``, ``train_ac.KEY=V``, ``mpc.KEY=V`` to their stage."""
    routed: dict[str, list[str]] = {prefix: [] for prefix in STAGE_PREFIXES}
    for item in extra:
        stage, _, override = item.partition(".")
        if stage not in routed or "=" not in override:
            raise BuildError(f"unrecognised argument {item!r} (use pretrain.KEY=V, "
                             "train_ac.KEY=V or mpc.KEY=V)")
        routed[stage].append(override)
    return routed


class Progress:
    """Which stages are done and with what (out/stages.json), so that a rerun skips them, and
    refuses a stage whose command or data changed since it ran (its result would describe
    another study)."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE
        self.done: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def finished(self, key: str, product: Path, what: list[str], quiet: bool = False) -> bool:
        if key not in self.done or not product.exists():
            return False
        if self.done[key].get("what") != what:
            raise BuildError(f"{key} ran with other settings or episodes than now ({product}): "
                             "rerun with the same options, or give another --out")
        if not quiet:
            print(f"[study] {key}: done ({product}), skipped", file=sys.stderr, flush=True)
        return True

    def mark(self, key: str, seconds: float | None, what: list[str]) -> None:
        self.done[key] = {"seconds": seconds, "what": what}
        write_json_atomic(self.path, self.done)


def pool_specs(env: str, episodes: int, actions: int | None) -> list[RecordSpec]:
    """The recipe's training datasets, scaled to ``episodes`` in all (one each at least)."""
    recipe = load_recipe(env)
    specs = [spec for spec in recipe.record if spec.name in recipe.train_ac_data]
    total = sum(spec.episodes for spec in specs)
    for spec in specs:
        spec.episodes = max(1, round(episodes * spec.episodes / total))
        spec.steps = actions or spec.steps
    return specs


def run_study(study: Study, episodes: int, actions: int | None, fractions: list[float],
              subsets: int, report_only: bool = False) -> dict[str, Any]:
    recipe = load_recipe(study.env)
    if report_only:
        return report_finished(study, recipe.train_ac, episodes, actions, fractions, subsets)
    study.out.mkdir(parents=True, exist_ok=True)
    stages, progress = Stages(study.out, tag="study"), Progress(study.out)
    pretrain_args = {name: pretrain_command(study, recipe.pretrain, arm)
                     for name, arm in study.pretrainings.items()}
    for args in pretrain_args.values():
        preflight("pretrain", args[2:])
    for arm in study.arms:
        preflight("train_ac", train_command(study, recipe.train_ac, arm, "check", [])[2:])

    datasets = {}
    for spec in pool_specs(study.env, episodes, actions):
        datasets[spec.name] = study.out / "data" / spec.name
        record(stages, study.env, datasets[spec.name], spec)
    drawn = draw_subsets(pool_episodes(datasets), fractions, subsets, study.seed)

    pool = [f"{dataset}/{episode}" for dataset, episode in pool_episodes(datasets)]
    for name, args in pretrain_args.items():
        key, what = f"pretrain {name}", [*args, *pool]
        if not progress.finished(key, study.out / "pretrain" / name / "checkpoint.pt", what):
            stages.run(key, args, resumes=study.out / "pretrain" / name)
            progress.mark(key, stages.seconds[key], what)

    table = None  # the latest report: models skipped as done change nothing it holds
    for subset in drawn:
        paths = subset_paths(subset, datasets, study.out)
        for arm in study.arms:
            trained = train(study, stages, progress, recipe.train_ac, arm, subset, paths)
            if evaluate(study, stages, progress, arm.name, subset) or trained:
                table = report(study, progress, recipe.train_ac, drawn, datasets)

    if table is None:  # nothing ran: the table of what an earlier run finished
        table = report(study, progress, recipe.train_ac, drawn, datasets)
    summary = {"env": study.env, "pool_episodes": len(pool_episodes(datasets)),
               "fractions": fractions, "subsets": subsets, "inits": study.inits,
               "variants": variant_settings(study),
               "eval_episodes": study.eval_episodes, "eval_seed": study.eval_seed,
               "stage_seconds": stages.seconds,
               "command": " ".join(["python -m jepa_world.study", *sys.argv[1:]])}
    write_json_atomic(study.out / "study.json", summary)
    print(table)
    return summary


def report_finished(study: Study, recipe_train_ac: list[str], episodes: int,
                    actions: int | None, fractions: list[float], subsets: int) -> dict[str, Any]:
    """``--report``: the table and plot of the models already evaluated; nothing recorded,
    trained or planned (a study stopped part-way, or asked for fewer fractions than it ran)."""
    datasets = {spec.name: study.out / "data" / spec.name
                for spec in pool_specs(study.env, episodes, actions)}
    absent = [name for name, path in datasets.items() if not (path / "manifest.json").is_file()]
    if absent:
        raise SubsetError(f"--report: {study.out} has no recorded pool ({', '.join(absent)} "
                          "missing): run the study first")
    drawn = draw_subsets(pool_episodes(datasets), fractions, subsets, study.seed)
    print(report(study, Progress(study.out), recipe_train_ac, drawn, datasets), end="")
    return {"env": study.env, "report_only": True}


def variant_settings(study: Study) -> dict[str, list[str]]:
    """Each variant row's initialisation and settings, as the table describes them."""
    return {arm.name: [arm.init, *arm.settings,
                       *(f"pretrain.{item}" for item in arm.pretrain_settings)]
            for arm in study.arms if arm.settings or arm.pretrain_settings}


def report(study: Study, progress: Progress, recipe_train_ac: list[str], drawn: list[Subset],
           datasets: dict[str, Path]) -> str:
    """The evaluation's table and plot, and the latest at the top of the folder, from the
    models evaluated so far; the others are listed as not evaluated yet. Returns the table."""
    rows, pending = [], []
    for subset in drawn:
        paths = subset_paths(subset, datasets, study.out, write=False)
        for arm in study.arms:
            metrics = eval_file(study, arm.name, subset.label)
            trained = train_what(study, recipe_train_ac, arm, subset, paths)
            if (progress.finished(f"train {arm.name} {subset.label}",
                                  model_dir(study, arm.name, subset.label) / "weights.safetensors",
                                  trained, quiet=True)
                    and progress.finished(f"plan {arm.name} {subset.label} {evaluation(study)}",
                                          metrics, plan_command(study, arm.name, subset, metrics),
                                          quiet=True)):
                rows.append(result_row(arm.name, subset, json.loads(metrics.read_text())))
            else:
                pending.append(f"{arm.name} {subset.label}")
    variants = variant_settings(study)
    write_report(study.out / "evals" / evaluation(study), rows, study.env, variants, pending)
    table = write_report(study.out, rows, study.env, variants, pending)  # the latest evaluation's
    print(f"[study] table of {len(rows)} evaluated models ({len(pending)} not yet): "
          f"{study.out / 'results.md'}", file=sys.stderr, flush=True)
    return table


def pretrain_command(study: Study, recipe_pretrain: list[str], arm: Arm) -> list[str]:
    """``arm``'s pretraining run: its initialisation's objective, then its own settings."""
    videos = ",".join([str(study.out / "data" / name / "episodes")
                       for name in pool_names(study.env)] + study.video)
    return ["-m", "jepa_world.pretrain", f"data.paths=[{videos}]",
            f"out_dir={study.out / 'pretrain' / arm.pretraining}", f"seed={study.seed}",
            *recipe_pretrain, *study.overrides["pretrain"], *INITS[arm.init],
            *arm.pretrain_settings]


def pool_names(env: str) -> list[str]:
    recipe = load_recipe(env)
    return [spec.name for spec in recipe.record if spec.name in recipe.train_ac_data]


def train_command(study: Study, recipe_train_ac: list[str], arm: Arm, label: str,
                  paths: list[Path]) -> list[str]:
    data = ",".join(str(path) for path in paths) or str(study.out / "data")
    args = ["-m", "jepa_world.train_ac",
            f"encoder.checkpoint={study.out / 'pretrain' / arm.pretraining}",
            f"data.paths=[{data}]", f"out_dir={model_dir(study, arm.name, label).parent}",
            f"seed={study.seed}", *recipe_train_ac, *TRAIN_AC, *study.overrides["train_ac"],
            *arm.settings]
    return args + (["encoder.init=random"] if arm.init == "random" else [])


def model_dir(study: Study, arm: str, label: str) -> Path:
    return study.out / "models" / arm / label / "world_model"


def evaluation(study: Study) -> str:
    """The held-out episodes' name: each evaluation keeps its own files and stages, so that
    planning more episodes (or another seed's) reuses the trained models and keeps the
    earlier evaluation's results."""
    return f"seed{study.eval_seed}-{study.eval_episodes}ep"


def eval_file(study: Study, arm: str, label: str) -> Path:
    return study.out / "evals" / evaluation(study) / arm / f"{label}.json"


def subset_paths(subset: Subset, datasets: dict[str, Path], out: Path,
                 write: bool = True) -> list[Path]:
    """The dataset folders a model of ``subset`` trains on (written first unless ``write``
    is false)."""
    if subset.fraction == 1:
        return [datasets[name] for name in sorted(datasets)]
    folder = out / "subsets" / subset.label
    return write_subset(subset, datasets, folder) if write else subset_folders(subset, folder)


def train(study: Study, stages: Stages, progress: Progress, recipe_train_ac: list[str],
          arm: Arm, subset: Subset, paths: list[Path]) -> bool:
    """Trains one model unless it is done; whether it ran."""
    key = f"train {arm.name} {subset.label}"
    model = model_dir(study, arm.name, subset.label)
    what = train_what(study, recipe_train_ac, arm, subset, paths)
    if progress.finished(key, model / "weights.safetensors", what):
        return False
    stages.run(key, train_command(study, recipe_train_ac, arm, subset.label, paths),
               resumes=model.parent)
    progress.mark(key, stages.seconds[key], what)
    return True


def train_what(study: Study, recipe_train_ac: list[str], arm: Arm, subset: Subset,
               paths: list[Path]) -> list[str]:
    """What a model's training stage is recorded with: its command and its episodes."""
    return [*train_command(study, recipe_train_ac, arm, subset.label, paths),
            *(f"{dataset}/{episode}" for dataset, episode in subset.episodes)]


def evaluate(study: Study, stages: Stages, progress: Progress, arm: str, subset: Subset) -> bool:
    """Plans with one model unless that evaluation is done; whether it ran."""
    key = f"plan {arm} {subset.label} {evaluation(study)}"
    metrics = eval_file(study, arm, subset.label)
    if progress.finished(key, metrics, args := plan_command(study, arm, subset, metrics)):
        return False
    metrics.parent.mkdir(parents=True, exist_ok=True)
    stages.run(key, args)
    progress.mark(key, stages.seconds[key], args)
    return True


def plan_command(study: Study, arm: str, subset: Subset, metrics: Path) -> list[str]:
    return ["-m", "planners.mpc", "--env", study.env, "--checkpoint",
            str(model_dir(study, arm, subset.label)), "--episodes", str(study.eval_episodes),
            "--seed", str(study.eval_seed), "--json", str(metrics), "--quiet", *MPC,
            *study.overrides["mpc"]]


def result_row(arm: str, subset: Subset, metrics: dict[str, Any]) -> dict[str, Any]:
    """One model's line of results.json, from its planner metrics."""
    return {"init": arm, "fraction": subset.fraction, "subset": subset.index,
            "labelled_episodes": len(subset.episodes),
            "success": metrics["success_rate"], "success_any": metrics["success_any_rate"],
            "episodes": metrics["episodes"],
            "episode_success": {str(r["seed"]): bool(r["success"]) for r in metrics["records"]},
            "plan_ms_median": metrics["plan_ms_median"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="task name, e.g. gym:Reacher-v5")
    parser.add_argument("--out", help="study folder (default runs/study/<env>-label-efficiency)")
    parser.add_argument("--episodes", type=int, default=400,
                        help="the action-labelled pool: episodes recorded (the recipe's "
                        "training datasets, scaled to this many)")
    parser.add_argument("--steps", type=int, help="actions per recorded episode (default: the "
                        "recipe's)")
    parser.add_argument("--fractions", default="0.05,0.1,0.25,1",
                        help="fractions of the pool a world model trains on")
    parser.add_argument("--subsets", type=int, default=3,
                        help="random subsets per fraction below 1")
    parser.add_argument("--inits", default="vjepa,random,pixels",
                        help=f"encoder initialisations (of {', '.join(INITS)}; none: only "
                        "the --variant rows)")
    parser.add_argument("--variant", action="append", default=[],
                        help="one more row: 'NAME=INIT KEY=V ...', the world models of INIT's "
                        "pretraining trained with these train_ac settings besides the study's "
                        "(e.g. 'vjepa-lr0.1=vjepa encoder.lr_scale=0.1'); pretrain.KEY=V "
                        "settings give the row its own pretraining run (repeatable)")
    parser.add_argument("--eval-episodes", type=int, default=20,
                        help="held-out episodes each model plans")
    parser.add_argument("--eval-seed", type=int, default=0,
                        help="picks the held-out evaluation seeds (planners.mpc --seed)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the subsets and of every training stage")
    parser.add_argument("--report", action="store_true",
                        help="only write the table and plot of the models evaluated so far "
                        "(record, train and plan nothing)")
    parser.add_argument("--video", action="append", default=[],
                        help="more video to pretrain on beside the pool's (a folder, a file "
                        "or an index, as pretrain's data.paths; repeatable)")


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        prog="python -m jepa_world.study label-efficiency",
        description=__doc__.splitlines()[0],
        epilog="Stage settings pass on as pretrain.KEY=V, train_ac.KEY=V, mpc.KEY=V. "
        "docs: docs/pretraining.md",
    )
    add_arguments(parser)
    args, extra = parser.parse_known_args(argv)
    started = time.perf_counter()

    def study() -> None:
        for name in ("episodes", "subsets", "eval_episodes", "steps"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise SubsetError(f"--{name.replace('_', '-')} must be positive, got {value}")
        for name, top in (("seed", MAX_SEED), ("eval_seed", MAX_EVAL_SEED)):
            if not 0 <= getattr(args, name) <= top:
                raise SubsetError(f"--{name.replace('_', '-')} must be in [0, {top}]")
        fractions = parse_fractions(args.fractions)
        chosen = Study(args.env, Path(args.out or default_out(args.env)).resolve(), args.seed,
                       args.eval_episodes, args.eval_seed,
                       make_arms(parse_inits(args.inits), args.variant),
                       route(extra), [str(Path(path).resolve()) for path in args.video])
        run_study(chosen, args.episodes, args.steps, fractions, args.subsets, args.report)
        print(f"[study] done in {time.perf_counter() - started:.0f} s: {chosen.out}",
              file=sys.stderr)

    return run_stages(study, (BuildError, SubsetError))


def default_out(env: str) -> str:
    return f"runs/study/{env.replace(':', '-')}-label-efficiency"
