"""python -m planners.mpc --env NAME: receding-horizon planning with a world model.

This file wires the command: the typed configuration (validated once), the task instances,
the policy (planners/policies.py: the learned world model's planner, the simulator oracle or
random actions) and the episode runner (planners/episodes.py), then summarises the task's own
metrics. The planner sees only what a robot would: the current frame and the goal image,
encoded by the world model, plus proprioception when the model takes it; the task judges
success at the end of the budget (``success_rate``) and at any step (``success_any_rate``).

``--num-envs K`` runs K episodes in lockstep with one planner call per replanning step for all
of them; every episode draws its planner noise from its own generator, so the results do not
depend on K (only the timings do).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from jepa_world.text import count
from jepa_world.training.cli import (
    UserError,
    check_device,
    check_positive,
    load_config,
    run_command,
    typed_config,
)
from jepa_world.training.config_help import wants_help
from jepa_world.training.runtime import resolve_device
from planners import get_planner
from planners.base import (
    DEFAULT_ENERGY_STEPS,
    PlannerSettings,
    command_setting,
    make_settings,
    model_planner_settings,
    planning_defaults,
)
from planners.correction import OffsetCorrection
from planners.episodes import (
    EVAL_SEED_BASE,
    EVAL_SEED_STRIDE,
    EpisodeRecord,
    EpisodeRunner,
    eval_seed,
)
from planners.policies import OraclePolicy, PlannerPolicy, RandomPolicy
from planners.video import episode_video_writer

__all__ = ["EVAL_SEED_BASE", "EVAL_SEED_STRIDE", "MPCConfig", "eval_seed", "evaluate", "main"]

MODELS = ("learned", "oracle", "random", "distilled")
ORACLE_NOTE = (
    "oracle: the planner searches the true simulator from the true state towards the goal "
    "state (an upper bound, not a learned result)"
)
RANDOM_NOTE = "random: uniform random actions, no planner (a lower bound)"
DISTILLED_NOTE = ("distilled: a small policy trained on the planner's actions and/or its energy "
                  "in imagination (python -m jepa_world.distill)")


# ---------------------------------------------------------------------- configuration
@dataclass
class OracleConfig:
    threads: Any = "auto"
    # a world model (folder or shipped name) whose latent energy scores the oracle's rendered
    # states instead of the task's state cost: exact dynamics, learned energy (a diagnostic)
    energy_model: str | None = None


@dataclass
class VideoConfig:
    fps: float = 10.0
    scale: int = 4


@dataclass
class MPCConfig:
    """The schema of configs/mpc.yaml (see the comments there)."""

    env: str = "reach"
    image_size: int = 64
    goal: str | None = None
    budget: int = 50
    episodes: int = 10
    seed: int = 0
    num_envs: int = 1
    model: str = "learned"
    checkpoint: str | None = None
    policy: str | None = None
    proposal: str | None = None
    tail: str | None = None
    tail_blocks: int = 3
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0
    planner: str = "cem"
    warm_start: bool = True
    horizon: int | None = None
    frameskip: int = 5
    energy: str = "l2"
    energy_steps: str | None = None
    step_weights: list[float] | None = None
    readout_weight: float | None = None
    shrink_horizon: bool = False
    repeat_in_block: bool = True
    correction: str = "none"
    correction_gain: float = 1.0
    # the planners' settings default to configs/mpc.yaml's also when evaluate() gets a dict
    cem: dict[str, Any] = field(default_factory=lambda: command_setting("cem"))
    mppi: dict[str, Any] = field(default_factory=lambda: command_setting("mppi"))
    gradient: dict[str, Any] = field(default_factory=lambda: command_setting("gradient"))
    oracle: OracleConfig = field(default_factory=OracleConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

    def validate(self) -> None:
        check_config(self)


def check_config(cfg: MPCConfig) -> None:
    """Reject bad values up front, in one line each."""
    import envs

    try:
        envs.resolve_env_id(cfg.env)
    except envs.UnknownEnvError as exc:
        raise UserError(str(exc)) from None
    for key in ("episodes", "num_envs", "budget", "horizon", "frameskip", "image_size",
                "tail_blocks"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            raise UserError(f"{key} must be a positive integer, got {getattr(cfg, key)}")
    check_device(cfg.device)
    try:
        eval_seed(cfg.seed, 0)  # the one place that knows the valid evaluation seeds
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if cfg.episodes > EVAL_SEED_STRIDE:
        raise UserError(f"at most {EVAL_SEED_STRIDE} episodes per --seed (distinct eval seeds)")
    if cfg.model not in MODELS:
        raise UserError(f"unknown model {cfg.model!r} (known: {', '.join(MODELS)})")
    if (cfg.model == "distilled") != (cfg.policy is not None):
        raise UserError("--policy DIR (a python -m jepa_world.distill result) goes with "
                        "model=distilled, and only with it")
    for key in ("proposal", "tail"):
        if getattr(cfg, key) is not None and (cfg.model != "learned" or cfg.planner == "gradient"):
            raise UserError(f"{key}=DIR (a distilled policy) goes with the learned model and a "
                            "sampling planner (cem, mppi)")
    if cfg.checkpoint is not None and cfg.model != "learned":
        raise UserError(f"--checkpoint is a world model to plan with; model={cfg.model} does "
                        "not read it (a distilled policy names its own world model, the "
                        "oracle's learned energy is oracle.energy_model=DIR)")
    if cfg.correction not in ("none", "offset"):
        raise UserError(f"unknown correction {cfg.correction!r} (known: none, offset)")
    try:
        OffsetCorrection(cfg.correction_gain)  # the one place that knows the valid gains
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if cfg.model in ("learned", "oracle"):
        try:
            get_planner(cfg.planner)  # its settings are built once, in make_policy
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if cfg.model == "oracle" and cfg.planner == "gradient":
        raise UserError("the MuJoCo oracle is not differentiable: use --planner cem or mppi")
    polishes = cfg.planner in ("cem", "mppi") and getattr(cfg, cfg.planner).get("polish_steps")
    if polishes and (cfg.model == "oracle" or cfg.tail is not None):
        raise UserError(f"{cfg.planner}.polish_steps follows the learned model's gradient: not "
                        "with the MuJoCo oracle or a policy tail")
    try:
        from planners.oracle import resolve_threads

        resolve_threads(cfg.oracle.threads)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise UserError(f"device must be auto, cpu or cuda, got {cfg.device!r}")
    from jepa_world.world_model import PRECISIONS

    if cfg.precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
    check_positive(cfg.video, "video.", "fps", "scale")


def planner_settings(
    cfg: MPCConfig, action_box: tuple[float, float] = (-1.0, 1.0)
) -> tuple[Callable[..., Any], PlannerSettings]:
    """The plan function and validated settings that the config asks for."""
    try:
        plan_fn, settings_cls = get_planner(cfg.planner)
        specific = dict(getattr(cfg, cfg.planner))
        common = {
            "horizon": cfg.horizon,
            "metric": cfg.energy,
            "energy_steps": cfg.energy_steps or DEFAULT_ENERGY_STEPS,
            "step_weights": None if cfg.step_weights is None else list(cfg.step_weights),
            "repeat_in_block": cfg.repeat_in_block,
            "workers": cfg.workers,
            "readout_weight": cfg.readout_weight,
            "action_low": action_box[0],
            "action_high": action_box[1],
        }
        settings = make_settings(settings_cls, None, {**common, **specific})
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad planner settings: {exc}") from None
    return plan_fn, settings


def apply_model_planning(cfg: Any, model: Any) -> None:
    """Fill in what ``cfg`` leaves to the world model (null horizon, energy_steps and sampling
    planners' polish settings) from its stored ``config.planning``, so that the metrics record
    the settings that ran."""
    cfg.horizon, cfg.energy_steps = planning_defaults(model, cfg.horizon, cfg.energy_steps)
    for name in ("cem", "mppi"):
        section = model_planner_settings(model, name, getattr(cfg, name),
                                         tail=cfg.tail is not None)
        setattr(cfg, name, section)


def load_world_model(checkpoint: str, device: torch.device) -> Any:
    """``jepa_world.WorldModel.load`` with every loading failure turned into one line."""
    try:
        from jepa_world import WorldModel
    except (ImportError, AttributeError) as exc:
        raise UserError(f"the learned world model is unavailable: {exc}") from None
    try:
        model = WorldModel.load(checkpoint)
    except (ValueError, UserError, FileNotFoundError, RuntimeError, OSError, KeyError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(f"cannot load world model {checkpoint!r}: {message}") from None
    return model.to(device)


def default_checkpoint(env: str) -> str:
    """The task's shipped world model, or one line saying how to make one."""
    import envs
    from jepa_world.world_model import shipped_names

    name = envs.short_name(env)
    if name not in shipped_names():
        raise UserError(
            f"no shipped world model for {name} (shipped: {', '.join(shipped_names())}): pass "
            f"--checkpoint DIR, e.g. from python -m jepa_world.build --env {name}"
        )
    return name


# ---------------------------------------------------------------------- wiring
def action_box(task: Any) -> tuple[float, float]:
    """The task's action box as the planners' scalar bounds (the same for every dimension)."""
    low, high = task.action_space.low, task.action_space.high
    if np.ptp(low) > 0 or np.ptp(high) > 0:
        raise UserError("the planners need the same action bounds in every dimension")
    return float(low[0]), float(high[0])


def make_policy(cfg: MPCConfig, tasks: list[Any], model: Any,
                plan: tuple[Callable[..., Any], PlannerSettings] | None = None) -> Any:
    """The actor the config asks for, checked against the task; ``plan`` (a plan function
    and its settings) replaces the config's planner."""
    task = tasks[0]
    env_id = task.spec.id if task.spec is not None else cfg.env
    action_dim = int(task.action_space.shape[0])
    if cfg.model == "random":
        return RandomPolicy(task.action_space.low, task.action_space.high, cfg.frameskip)
    if cfg.model == "distilled":
        return load_distilled(cfg.policy, task, env_id)
    plan_fn, settings = plan if plan is not None else planner_settings(cfg, action_box(task))
    if cfg.model == "oracle":
        from planners.oracle import OracleModel

        try:
            if cfg.oracle.energy_model:
                from planners.exact_dynamics import LearnedEnergyOracle

                oracle = LearnedEnergyOracle(task, load_world_model(cfg.oracle.energy_model, "cpu"),
                                             frameskip=cfg.frameskip,
                                             threads=cfg.oracle.threads)
            else:
                oracle = OracleModel.from_env(task, frameskip=cfg.frameskip,
                                              threads=cfg.oracle.threads)
        except (ValueError, NotImplementedError) as exc:
            raise UserError(f"no simulator oracle for {env_id}: {exc}") from None
        return OraclePolicy(oracle, plan_fn, settings, warm_start=cfg.warm_start,
                            shrink_horizon=cfg.shrink_horizon, budget=cfg.budget)
    if int(model.action_dim) != action_dim:
        raise UserError(
            f"the world model acts in {model.action_dim} dims but {env_id} needs {action_dim}"
        )
    trained_on = getattr(getattr(model, "config", None), "env_id", None)
    if trained_on and trained_on != env_id:
        raise UserError(f"the world model was trained on {trained_on}, not on {env_id}")
    proprio_dim = int(getattr(model, "proprio_dim", 0) or 0)
    env_proprio = int(task.observation_space["proprio"].shape[0])
    if proprio_dim not in (0, env_proprio):
        raise UserError(
            f"the world model reads {proprio_dim}-d proprio but {env_id} gives "
            f"{env_proprio}: it was trained on another version of the task, retrain it"
        )
    gain = cfg.correction_gain if cfg.correction == "offset" else None
    proposal = tail = None
    try:
        if cfg.proposal is not None:
            proposal = load_distilled(cfg.proposal, task, env_id, model).proposal(
                model, settings.horizon)
    except ValueError as exc:
        raise UserError(f"proposal {cfg.proposal!r}: {exc}") from None
    try:
        if cfg.tail is not None:
            tail = load_distilled(cfg.tail, task, env_id, model).tail(model, cfg.tail_blocks)
        return PlannerPolicy(model, plan_fn, settings, warm_start=cfg.warm_start,
                             shrink_horizon=cfg.shrink_horizon, correction_gain=gain,
                             budget=cfg.budget, proposal=proposal, tail=tail)
    except ValueError as exc:
        raise UserError(f"tail {cfg.tail!r}: {exc}" if cfg.tail else str(exc)) from None


def load_distilled(path: str, task: Any, env_id: str, world_model: Any = None) -> Any:
    """A distilled policy with its world model (``world_model``, else the one it names),
    checked against the task."""
    from jepa_world.rl.student import StudentPolicy

    try:
        policy = StudentPolicy.load(path, world_model)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise UserError(f"cannot load distilled policy {path!r}: {' '.join(str(exc).split())}") \
            from None
    trained_on = getattr(policy.world_model.config, "env_id", None)
    if trained_on and trained_on != env_id:
        raise UserError(f"the distilled policy's world model was trained on {trained_on}, "
                        f"not on {env_id}")
    if policy.config.action_dim != int(task.action_space.shape[0]):
        raise UserError(f"the distilled policy acts in {policy.config.action_dim} dims but "
                        f"{env_id} needs {task.action_space.shape[0]}")
    return policy


def make_tasks(cfg: MPCConfig, count: int) -> list[Any]:
    return open_tasks(cfg.env, count, cfg.image_size, cfg.budget, cfg.goal)


def open_tasks(env: str, count: int, image_size: int, budget: int,
               goal: str | None) -> list[Any]:
    """``count`` instances of a task, ``goal`` (a protocol name or None) checked against it."""
    import envs

    try:
        tasks = [envs.make_task(env, image_size=image_size, max_episode_steps=budget)
                 for _ in range(count)]
    except ValueError as exc:
        raise UserError(f"cannot make {env}: {exc}") from None
    protocols = tasks[0].goal_protocols
    if goal is not None and goal not in protocols:
        raise UserError(
            f"unknown goal protocol {goal!r} for {env} (known: {', '.join(protocols)})"
        )
    return tasks


def evaluate(
    cfg: DictConfig | MPCConfig,
    *,
    model: Any = None,
    video_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    plan: tuple[Callable[..., Any], PlannerSettings] | None = None,
    reset_options: Callable[[int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the evaluation that ``cfg`` (configs/mpc.yaml) describes; returns the metrics.

    ``model`` overrides the learned model (an object following the world-model protocol), so
    that benchmarks load a checkpoint once for many runs. ``plan``: a plan function with the
    planners' signature and its settings (your own planner, a library's), evaluated under the
    same protocol instead of ``cfg.planner``. ``reset_options``: episode index -> the task's
    reset options that fix its start and goal (``start_qpos``, ``start_qvel``, ``goal_qpos``:
    states of a recorded held-out dataset, as stable-worldmodel evaluates).
    """
    from tqdm import tqdm

    cfg = dataclasses.replace(typed_config(MPCConfig, cfg))  # a copy: defaults filled in below
    log = log or (lambda line: tqdm.write(line, file=sys.stdout))
    torch.manual_seed(cfg.seed)
    if cfg.model == "learned" and cfg.checkpoint is None and model is None:
        cfg.checkpoint = default_checkpoint(cfg.env)
    if cfg.model == "learned" and model is None:
        model = load_world_model(cfg.checkpoint, resolve_device(cfg.device))
    if cfg.model == "learned" and hasattr(model, "precision"):
        model.precision = cfg.precision
    if cfg.model == "distilled":
        model = None
    model_px = getattr(model, "image_size", None)
    if model_px is not None and model_px != cfg.image_size:
        print(f"note: frames rendered at {cfg.image_size} px are resized to the world model's "
              f"{model_px} px (image_size={model_px} renders them at its size)", file=sys.stderr)
    apply_model_planning(cfg, model)
    video = None
    if video_dir is not None:
        folder = Path(video_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create video folder {folder}: {exc.strerror}") from None
        video = episode_video_writer(folder, cfg.video.fps, max(cfg.video.scale, 1))
    tasks = make_tasks(cfg, min(cfg.num_envs, cfg.episodes))
    goal = cfg.goal or tasks[0].goal_protocol
    records: list[EpisodeRecord] = []
    policy = None
    try:
        policy = make_policy(cfg, tasks, model, plan)
        if plan is not None:  # recorded as the planner that ran
            cfg.planner = f"{plan[0].__module__}.{plan[0].__qualname__}"
        runner = EpisodeRunner(tasks, policy, cfg.budget, cfg.seed, goal, video, reset_options)
        blocks = -(-cfg.budget // policy.frameskip)
        bar = tqdm(total=cfg.episodes * blocks, desc=f"mpc {cfg.model}", unit="block",
                   disable=not progress, file=sys.stderr)
        try:
            for first in range(0, cfg.episodes, len(tasks)):
                indices = list(range(first, min(first + len(tasks), cfg.episodes)))
                width = len(indices)
                batch = runner.run_batch(indices, lambda n=width: bar.update(n))
                for record in batch:
                    log(episode_line(record, tasks[0]))
                records.extend(batch)
        finally:
            bar.close()
    finally:
        for task in tasks:
            task.close()
        if policy is not None and cfg.model != "learned":  # a caller's learned model stays open
            policy.close()
    return summarize(cfg, records, runner, tasks[0], goal)


# ---------------------------------------------------------------------- reporting
def format_metric(value: float, unit: str) -> str:
    if unit == "m":
        return f"{100 * value:.1f} cm"
    return f"{value:.3f} {unit}".rstrip()


def episode_line(r: EpisodeRecord, task: Any) -> str:
    plan = f", plan {r.plan_ms_median:.0f} ms median" if r.plan_ms else ""
    errors = ", ".join(
        f"{name.replace('_', ' ')} {format_metric(value, task.metric_units.get(name, ''))}"
        for name, value in r.metrics.items()
    )
    return (
        f"episode {r.index:3d} (seed {r.seed}): {'success' if r.success else 'failure'}"
        f" (any step: {'yes' if r.success_any else 'no'}), {errors}{plan}"
    )


def summarize(
    cfg: MPCConfig, records: list[EpisodeRecord], runner: EpisodeRunner, task: Any, goal: str
) -> dict[str, Any]:
    """The metrics JSON (CONTRACT keys first, then the task's own error metrics)."""
    stats = runner.policy.stats
    plan_ms = stats.call_ms  # one latency per planner call (all episodes of a batch at once)
    settings = None
    if cfg.model in ("learned", "oracle"):
        settings = asdict(runner.policy.settings)
        settings["frameskip"] = runner.policy.frameskip
        settings["warm_start"] = cfg.warm_start
        settings["shrink_horizon"] = cfg.shrink_horizon
        settings["correction"] = cfg.correction if cfg.model == "learned" else "none"
        settings["correction_gain"] = cfg.correction_gain
    metrics: dict[str, Any] = {
        "success_rate": float(np.mean([r.success for r in records])),
        "success_any_rate": float(np.mean([r.success_any for r in records])),
    }
    for name in task.metric_names:
        values = [r.metrics[name] for r in records]
        metrics[f"final_{name}_mean"] = float(np.mean(values))
        metrics[f"final_{name}_median"] = float(np.median(values))
    replans = max(stats.replans, 1)
    metrics.update({
        "plan_ms_median": float(np.median(plan_ms)) if plan_ms else None,
        "plan_ms_p90": float(np.percentile(plan_ms, 90)) if plan_ms else None,
        "episodes": len(records),
        "seed": cfg.seed,
        "image_size": cfg.image_size,
        "planner": cfg.planner if cfg.model in ("learned", "oracle") else None,
        "checkpoint": cfg.checkpoint if cfg.model == "learned" else None,
        "policy": cfg.policy,
        "proposal": cfg.proposal,
        "tail": cfg.tail,
        "tail_blocks": cfg.tail_blocks if cfg.tail is not None else None,
        "readout_weight": readout_weight_used(cfg, runner.policy),
        "oracle_energy_model": cfg.oracle.energy_model if cfg.model == "oracle" else None,
        "model": cfg.model,
        "note": {"oracle": ORACLE_NOTE, "random": RANDOM_NOTE,
                 "distilled": DISTILLED_NOTE}.get(cfg.model),
        "env": task.spec.id if task.spec is not None else cfg.env,
        "env_name": cfg.env,
        "metric_names": list(task.metric_names),
        "metric_units": {name: task.metric_units.get(name, "") for name in task.metric_names},
        "goal_protocol": goal,
        "budget": cfg.budget,
        "num_envs": len(runner.tasks),
        "eval_seeds": [r.seed for r in records],
        "settings": settings,
        "timing": {
            "replans": stats.replans,
            "encode_ms_per_replan": 1000 * stats.encode_s / replans,
            "planner_ms_per_replan": 1000 * stats.planner_s / replans,
            "model_ms_per_replan": 1000 * stats.model_s / replans,
            "env_ms_per_step": 1000 * runner.env_s / max(runner.env_steps, 1),
            "envs_per_replan": len(runner.tasks),
            "iterations_per_plan": stats.iterations / stats.plans if stats.plans else None,
        },
        "config": OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True),
        "records": [r.to_json() for r in records],
    })
    return metrics


def readout_weight_used(cfg: MPCConfig, policy: Any) -> float | None:
    """The weight of the state readout's energy term that planned (None: no readout)."""
    readout = getattr(getattr(policy, "model", None), "readout", None)
    if cfg.model != "learned" or readout is None:
        return None
    return float(readout.config.weight if cfg.readout_weight is None else cfg.readout_weight)


def summary_text(metrics: dict[str, Any]) -> str:
    """One screen: what was run and how it went."""
    plan = metrics["plan_ms_median"]
    lines = [
        "",
        f"{metrics['env']} | model {metrics['model']}"
        + (f" ({metrics['checkpoint']})" if metrics["checkpoint"] else "")
        + (f" + energy of {metrics['oracle_energy_model']} on rendered states"
           if metrics.get("oracle_energy_model") else "")
        + (f" | planner {metrics['planner']}" if metrics["planner"] else "")
        + (f" + polish {metrics['settings']['polish_steps']}"
           + (" gauss_newton" if metrics["settings"].get("polish_method") == "gauss_newton"
              else "")
           if metrics["planner"] and (metrics.get("settings") or {}).get("polish_steps") else "")
        + (f" + readout (weight {metrics['readout_weight']:g})"
           if metrics.get("readout_weight") else "")
        + (f" + proposal {metrics['proposal']}" if metrics.get("proposal") else "")
        + (f" + tail {metrics['tail']} ({metrics['tail_blocks']} blocks)"
           if metrics.get("tail") else "")
        + f" | goal {metrics['goal_protocol']} | budget {metrics['budget']} steps"
        + f" | {count(metrics['episodes'], 'episode')}, seed {metrics['seed']}",
    ]
    labels = ["final " + name.replace("_", " ") for name in metrics["metric_names"]]
    width = max([20, *(len(label) for label in labels)])  # one column for every metric line
    lines += [f"  {'success (end)':<{width}} {100 * metrics['success_rate']:.1f} %",
              f"  {'success (any step)':<{width}} {100 * metrics['success_any_rate']:.1f} %"]
    for name, label in zip(metrics["metric_names"], labels, strict=True):
        unit = metrics["metric_units"][name]
        mean = format_metric(metrics[f"final_{name}_mean"], unit)
        median = format_metric(metrics[f"final_{name}_median"], unit)
        lines.append(f"  {label:<{width}} {mean} mean, {median} median")
    if plan is not None:
        timing = metrics["timing"]
        label = "per step (policy)" if metrics["model"] == "distilled" else "replanning"
        lines.append(
            f"  {label:<{width}} {plan:.0f} ms median, {metrics['plan_ms_p90']:.0f} ms p90 "
            f"for {timing['envs_per_replan']} env(s) (encode {timing['encode_ms_per_replan']:.0f}"
            f", world model {timing['model_ms_per_replan']:.0f} ms)"
        )
    if metrics["note"]:
        lines.append(f"  note: {metrics['note']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UserError(f"{message} (see python -m planners.mpc --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m planners.mpc",
        description="Plan in a task with a world model (receding horizon) and report success.",
        epilog="Trailing key=value arguments override configs/mpc.yaml, e.g. "
        "cem.samples=100 cem.iterations=10 horizon=3 energy=l2; all of them are listed below.",
    )
    parser.add_argument("--env", help="task name (reach, gym:Reacher-v5, gym:Pusher-v5, ...)")
    parser.add_argument("--checkpoint", help="WorldModel directory or shipped name "
                        "(default: the task's shipped model)")
    parser.add_argument("--model", help="learned | oracle | random | distilled")
    parser.add_argument("--policy", help="a distilled policy (python -m jepa_world.distill); "
                        "implies --model distilled")
    parser.add_argument("--episodes", type=int, help="evaluation episodes (config: 10)")
    parser.add_argument("--seed", type=int, help="picks the evaluation seeds (config: 0)")
    parser.add_argument("--planner", help="cem | mppi | gradient")
    parser.add_argument("--goal", help="goal protocol of the task, e.g. offset | uniform")
    parser.add_argument("--budget", type=int, help="env steps per episode (config: 50)")
    parser.add_argument("--num-envs", type=int, dest="num_envs",
                        help="episodes run in lockstep, planned in one call (config: 1)")
    parser.add_argument("--json", help="write the metrics to this file")
    parser.add_argument("--video", help="write one mp4 per episode here (frame | goal, step, "
                        "energy, success) and a GIF of the first")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


FLAG_KEYS = ("env", "checkpoint", "model", "policy", "episodes", "seed", "planner", "goal",
             "budget", "num_envs")


def parse(argv: list[str]) -> tuple[argparse.Namespace, DictConfig]:
    """Flags plus key=value overrides -> (args, composed config); flags win. ``evaluate``
    types and checks it, once."""
    if wants_help(argv):  # the flags, then every key=value setting with its current value
        print(build_parser().format_help())
        load_config("mpc", [t for t in argv if "=" in t and not t.startswith("-")] + ["--help"])
    args, rest = build_parser().parse_known_args(argv)
    for token in rest:
        if token.startswith("-") or "=" not in token:
            raise UserError(f"unrecognised argument {token!r} (flags, then key=value overrides)")
    cfg = load_config("mpc", rest)
    if args.policy is not None and args.model is None:
        args.model = "distilled"
    for key in FLAG_KEYS:
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    return args, cfg


def main(argv: list[str]) -> int:
    args, cfg = parse(argv)
    json_path = Path(args.json) if args.json else None
    if json_path is not None and (json_path.is_dir() or not json_path.parent.is_dir()):
        raise UserError(f"--json needs a file path in an existing folder, got {json_path}")
    if json_path is not None and not os.access(json_path.parent, os.W_OK | os.X_OK):
        raise UserError(f"--json: cannot write into {json_path.parent} (permission denied); "
                        "checked before any episode runs")
    try:
        metrics = evaluate(cfg, video_dir=args.video, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted: no metrics written", file=sys.stderr)
        return 130
    print(summary_text(metrics))
    if json_path is not None:
        from jepa_world.files import write_json_atomic

        try:
            write_json_atomic(json_path, metrics)
        except OSError as exc:
            raise UserError(f"cannot write {json_path}: {exc.strerror}") from None
        print(f"  metrics: {json_path}")
    if args.video:
        print(f"  videos: {args.video}")
    return 0


if __name__ == "__main__":
    run_command(main, interrupted="no metrics written")
