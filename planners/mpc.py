"""python -m planners.mpc --env reach: receding-horizon planning with a world model.

Each episode resets the task with an evaluation seed (``eval_seed``: 1_000_000 + seed * 10_000 +
episode, so it never meets the recording seeds 0, 1, 2, ... of ``envs.collect``). The planner
sees only what a robot would: the current frame and the goal image, encoded by the world
model, plus proprioception when the model takes it. It plans ``horizon`` action blocks,
the first block (``frameskip`` env steps) is executed, the arm is observed again and the
planner replans, warm-started from the shifted previous plan, until ``budget`` env steps are
spent (the last block is cut to what fits). The env's own criterion judges success at the end
(``success_rate``) and at any step (``success_any_rate``); the planner never sees it.

``--num-envs K`` runs K episodes in lockstep with one planner call per replanning step for all
of them. Every episode draws its planner noise from its own generator seeded by its evaluation
seed, so the results do not depend on K (only the timings do).

Models: ``learned`` (``WorldModel.load(--checkpoint)``), ``oracle`` (the simulator itself with
the goal joint angles: an upper bound, see planners/oracle.py) and ``random`` (uniform random
actions, no planner: a lower bound).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from jepa_world.training.cli import UserError, load_config, run_command
from jepa_world.training.runtime import resolve_device
from planners import get_planner
from planners.base import PlannerSettings, make_settings, shift_plan
from planners.correction import OffsetCorrection

EVAL_SEED_BASE = 1_000_000
EVAL_SEED_STRIDE = 10_000
MODELS = ("learned", "oracle", "random")
ORACLE_NOTE = (
    "oracle: the planner searches the true simulator from the true state towards the goal joint "
    "angles (an upper bound, not a learned result)"
)
RANDOM_NOTE = "random: uniform random actions, no planner (a lower bound)"


def eval_seed(seed: int, episode: int) -> int:
    """Reset seed of evaluation episode ``episode``: disjoint from recording seeds 0, 1, ..."""
    return EVAL_SEED_BASE + int(seed) * EVAL_SEED_STRIDE + int(episode)


@dataclass
class EpisodeRecord:
    """What one episode did; ``plan_ms`` holds the replanning latencies (encode + plan) of
    the calls that planned it (shared with the other episodes of its batch)."""

    index: int
    seed: int
    success: bool
    success_any: bool
    final_joint_error: float
    final_fingertip_distance: float
    steps: int
    replans: int
    final_energy: float | None
    plan_ms: list[float] = field(default_factory=list)

    @property
    def plan_ms_median(self) -> float:
        return float(np.median(self.plan_ms)) if self.plan_ms else 0.0


@dataclass
class Timers:
    """Seconds spent per stage across the run (the benchmark's breakdown)."""

    encode_s: float = 0.0
    planner_s: float = 0.0
    model_s: float = 0.0
    env_s: float = 0.0
    replans: int = 0
    env_steps: int = 0
    call_ms: list[float] = field(default_factory=list)


# ---------------------------------------------------------------------- configuration
def planner_settings(cfg: DictConfig) -> tuple[Callable[..., Any], PlannerSettings]:
    """The plan function and validated settings that the config asks for."""
    try:
        plan_fn, settings_cls = get_planner(str(cfg.planner))
        specific = OmegaConf.to_container(cfg[str(cfg.planner)], resolve=True) or {}
        weights = cfg.step_weights
        common = {
            "horizon": int(cfg.horizon),
            "metric": str(cfg.energy),
            "energy_steps": str(cfg.energy_steps),
            "step_weights": None if weights is None else list(weights),
            "repeat_in_block": bool(cfg.repeat_in_block),
        }
        settings = make_settings(settings_cls, None, {**common, **specific})
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad planner settings: {exc}") from None
    return plan_fn, settings


def _positive_int(cfg: DictConfig, key: str) -> int:
    value = cfg[key]
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"{key} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise UserError(f"{key} must be a positive integer, got {value}")
    return number


def check_config(cfg: DictConfig) -> None:
    """Reject bad input up front, in one line each."""
    import envs

    try:
        envs.resolve_env_id(str(cfg.env))
    except envs.UnknownEnvError as exc:
        raise UserError(str(exc)) from None
    for key in ("episodes", "num_envs", "budget", "horizon", "frameskip", "image_size"):
        _positive_int(cfg, key)
    if int(cfg.episodes) > EVAL_SEED_STRIDE:
        raise UserError(f"at most {EVAL_SEED_STRIDE} episodes per --seed (distinct eval seeds)")
    if cfg.model not in MODELS:
        raise UserError(f"unknown model {cfg.model!r} (known: {', '.join(MODELS)})")
    if cfg.correction not in ("none", "offset"):
        raise UserError(f"unknown correction {cfg.correction!r} (known: none, offset)")
    try:
        OffsetCorrection(cfg.correction_gain)  # the one place that knows the valid gains
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if cfg.goal not in ("offset", "uniform"):
        raise UserError(f"unknown goal protocol {cfg.goal!r} (known: offset, uniform)")
    if cfg.model != "random":
        planner_settings(cfg)
    if cfg.model == "oracle" and cfg.planner == "gradient":
        raise UserError("the MuJoCo oracle is not differentiable: use --planner cem or mppi")
    try:
        from planners.oracle import resolve_threads

        resolve_threads(cfg.oracle.threads)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if cfg.device not in ("auto", "cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise UserError(f"device must be auto, cpu or cuda, got {cfg.device!r}")


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


# ---------------------------------------------------------------------- the loop
class Evaluation:
    """Runs episodes in batches of ``num_envs`` ReachEnv instances stepped in lockstep."""

    def __init__(self, cfg: DictConfig, model: Any, video_dir: Path | None) -> None:
        import gymnasium as gym

        import envs

        self.cfg = cfg
        self.model = model
        self.kind = str(cfg.model)
        self.budget = int(cfg.budget)
        self.video_dir = video_dir
        self.env_id = envs.resolve_env_id(str(cfg.env))
        count = min(int(cfg.num_envs), int(cfg.episodes))
        self.envs = [
            gym.make(
                self.env_id,
                image_size=int(cfg.image_size),
                goal_protocol=str(cfg.goal),
                max_episode_steps=self.budget,
                disable_env_checker=True,
            ).unwrapped
            for _ in range(count)
        ]
        self.action_dim = int(self.envs[0].action_space.shape[0])
        self.timers = Timers()
        if self.kind == "oracle":
            from planners.oracle import OracleModel

            self.model = OracleModel.from_env(
                self.envs[0], frameskip=int(cfg.frameskip), threads=cfg.oracle.threads
            )
        if self.kind == "random":
            self.frameskip = int(cfg.frameskip)
        else:
            self.frameskip = int(self.model.frameskip)
            self.plan_fn, self.settings = planner_settings(cfg)
            if int(self.model.action_dim) != self.action_dim:
                raise UserError(
                    f"the world model acts in {self.model.action_dim} dims but {self.env_id} "
                    f"needs {self.action_dim}"
                )
        self.proprio_dim = int(getattr(self.model, "proprio_dim", 0) or 0)
        env_proprio = int(self.envs[0].observation_space["proprio"].shape[0])
        if self.kind == "learned" and self.proprio_dim not in (0, env_proprio):
            raise UserError(
                f"the world model reads {self.proprio_dim}-d proprio but {self.env_id} gives "
                f"{env_proprio}: it was trained on another version of the task, retrain it"
            )
        self.correct = self.kind == "learned" and str(cfg.correction) == "offset"
        self.correction_gain = float(cfg.correction_gain)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        if hasattr(self.model, "close"):
            self.model.close()

    # -------------------------------------------------------------- observation -> latent
    def _goal_latent(self, infos: list[dict]) -> torch.Tensor:
        if self.kind == "oracle":
            return self.model.encode_state(np.stack([i["goal_qpos"] for i in infos]))
        pixels = torch.from_numpy(np.stack([i["goal_pixels"] for i in infos]))
        with torch.no_grad():
            return self.model.encode(pixels)

    def _current_latent(self, obs: list[dict], envs: list) -> torch.Tensor:
        if self.kind == "oracle":
            states = [env.get_state() for env in envs]
            return self.model.encode_state(
                np.stack([s[0] for s in states]), np.stack([s[1] for s in states])
            )
        pixels = torch.from_numpy(np.stack([o["pixels"] for o in obs]))
        with torch.no_grad():
            return self.model.encode(pixels)

    def _proprio(self, obs: list[dict]) -> torch.Tensor | None:
        if self.kind != "learned" or self.proprio_dim == 0:
            return None
        return torch.from_numpy(np.stack([o["proprio"] for o in obs]))

    def _settings_for(self, steps_left: int) -> PlannerSettings:
        """The planner settings, with the horizon cut to the blocks that still fit into the
        budget when ``shrink_horizon`` is set (the last weights are kept)."""
        settings = self.settings
        blocks_left = -(-steps_left // self.frameskip)
        if not self.cfg.shrink_horizon or blocks_left >= settings.horizon:
            return settings
        weights = settings.step_weights
        return dataclasses.replace(
            settings,
            horizon=blocks_left,
            step_weights=None if weights is None else tuple(weights[-blocks_left:]),
        )

    # -------------------------------------------------------------- one batch of episodes
    def run_batch(self, indices: list[int], on_step: Callable[[], None]) -> list[EpisodeRecord]:
        from envs._gl import import_mujoco

        mujoco = import_mujoco()
        count = len(indices)
        envs = self.envs[:count]
        seeds = [eval_seed(int(self.cfg.seed), i) for i in indices]
        obs, infos = [], []
        for env, seed in zip(envs, seeds, strict=True):
            mujoco.mj_resetData(env.model, env.data)  # no solver warm start from the last episode
            o, info = env.reset(seed=seed)
            obs.append(o)
            infos.append(info)
        goal_pixels = [info["goal_pixels"] for info in infos]
        frames = [[o["pixels"]] for o in obs] if self.video_dir else None
        success_any = [False] * count
        plan_ms: list[list[float]] = [[] for _ in range(count)]
        energies: list[float | None] = [None] * count
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        rngs = [np.random.default_rng(seed) for seed in seeds]

        if self.kind != "random":
            started = time.perf_counter()
            z_goal = self._goal_latent(infos)
            self.timers.encode_s += time.perf_counter() - started
        warm = None
        correction = OffsetCorrection(self.correction_gain) if self.correct else None
        steps = replans = 0
        while steps < self.budget:
            todo = min(self.frameskip, self.budget - steps)
            if self.kind == "random":
                block = np.stack([rng.uniform(-1.0, 1.0, (todo, self.action_dim)) for rng in rngs])
            else:
                started = time.perf_counter()
                z_now = self._current_latent(obs, envs)
                proprio = self._proprio(obs)
                encoded = time.perf_counter()
                result = self.plan_fn(
                    self.model,
                    z_now,
                    z_goal if correction is None else correction.goal(z_goal, z_now),
                    proprio=proprio,
                    init_mean=warm,
                    generator=generators,
                    settings=self._settings_for(self.budget - steps),
                )
                if correction is not None:
                    correction.expect(self.model, z_now, result.actions[:, :1], proprio)
                block = result.actions[:, 0].detach().cpu().numpy()
                done = time.perf_counter()
                self.timers.encode_s += encoded - started
                self.timers.planner_s += done - encoded
                self.timers.model_s += float(result.info.get("model_s", 0.0))
                self.timers.replans += 1
                self.timers.call_ms.append(1000.0 * (done - started))
                for e in range(count):
                    plan_ms[e].append(1000.0 * (done - started))
                    energies[e] = float(result.energy[e])
                if self.cfg.warm_start:
                    warm = shift_plan(result.actions.detach(), 1)
                replans += 1
            started = time.perf_counter()
            for j in range(todo):
                for e, env in enumerate(envs):
                    o, _, _, _, info = env.step(block[e, j].astype(np.float32))
                    obs[e], infos[e] = o, info
                    success_any[e] = success_any[e] or bool(info["is_success"])
                    if frames is not None:
                        frames[e].append(o["pixels"])
            self.timers.env_s += time.perf_counter() - started
            self.timers.env_steps += todo * count
            steps += todo
            on_step()

        records = []
        for e in range(count):
            info = infos[e]
            records.append(
                EpisodeRecord(
                    index=indices[e],
                    seed=seeds[e],
                    success=bool(info["is_success"]),
                    success_any=success_any[e],
                    final_joint_error=float(info["joint_error"]),
                    final_fingertip_distance=float(info["fingertip_distance"]),
                    steps=steps,
                    replans=replans,
                    final_energy=energies[e],
                    plan_ms=[round(ms, 3) for ms in plan_ms[e]],
                )
            )
            if frames is not None:
                self._write_video(indices[e], frames[e], goal_pixels[e])
        return records

    def _write_video(self, index: int, frames: list[np.ndarray], goal: np.ndarray) -> None:
        from envs.video_io import write_mp4

        scale = max(int(self.cfg.video.scale), 1)
        pairs = np.stack([np.concatenate([frame, goal], axis=1) for frame in frames])
        pairs = pairs.repeat(scale, axis=1).repeat(scale, axis=2)
        write_mp4(self.video_dir / f"episode_{index:04d}.mp4", pairs, fps=float(self.cfg.video.fps),
                  lossless=False)


def evaluate(
    cfg: DictConfig,
    *,
    model: Any = None,
    video_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the evaluation that ``cfg`` (configs/mpc.yaml) describes; returns the metrics.

    ``model`` overrides the learned model (an object following the world-model protocol), so
    that benchmarks load a checkpoint once for many runs.
    """
    from tqdm import tqdm

    check_config(cfg)
    log = log or (lambda line: tqdm.write(line, file=sys.stdout))
    torch.manual_seed(int(cfg.seed))
    if cfg.model == "learned" and model is None:
        model = load_world_model(str(cfg.checkpoint), resolve_device(str(cfg.device)))
    video_path = None
    if video_dir is not None:
        video_path = Path(video_dir)
        try:
            video_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create video folder {video_path}: {exc.strerror}") from None
    episodes = int(cfg.episodes)
    evaluation = Evaluation(cfg, model, video_path)
    records: list[EpisodeRecord] = []
    replans_per_episode = -(-int(cfg.budget) // evaluation.frameskip)
    bar = tqdm(total=episodes * replans_per_episode, desc=f"mpc {cfg.model}", unit="block",
               disable=not progress, file=sys.stderr)
    try:
        width = len(evaluation.envs)
        for first in range(0, episodes, width):
            indices = list(range(first, min(first + width, episodes)))
            count = len(indices)
            batch = evaluation.run_batch(indices, lambda count=count: bar.update(count))
            for record in batch:
                log(_episode_line(record))
            records.extend(batch)
    finally:
        bar.close()
        evaluation.close()
    return summarize(cfg, records, evaluation)


def _episode_line(r: EpisodeRecord) -> str:
    plan = f", plan {r.plan_ms_median:.0f} ms median" if r.plan_ms else ""
    return (
        f"episode {r.index:3d} (seed {r.seed}): {'success' if r.success else 'failure'}"
        f" (any step: {'yes' if r.success_any else 'no'}), joint error "
        f"{r.final_joint_error:.3f} rad, fingertip {100 * r.final_fingertip_distance:.1f} cm{plan}"
    )


def summarize(cfg: DictConfig, records: list[EpisodeRecord], evaluation: Evaluation) -> dict:
    """The metrics JSON (CONTRACT keys first)."""
    t = evaluation.timers
    plan_ms = t.call_ms  # one latency per planner call (all episodes of a batch at once)
    kind = str(cfg.model)
    settings = None
    if kind != "random":
        settings = asdict(evaluation.settings)
        settings["frameskip"] = evaluation.frameskip
        settings["warm_start"] = bool(cfg.warm_start)
        settings["shrink_horizon"] = bool(cfg.shrink_horizon)
        settings["correction"] = str(cfg.correction) if kind == "learned" else "none"
        settings["correction_gain"] = float(cfg.correction_gain)
    errors = [r.final_joint_error for r in records]
    return {
        "success_rate": float(np.mean([r.success for r in records])),
        "success_any_rate": float(np.mean([r.success_any for r in records])),
        "final_joint_error_mean": float(np.mean(errors)),
        "final_joint_error_median": float(np.median(errors)),
        "final_fingertip_distance_mean": float(
            np.mean([r.final_fingertip_distance for r in records])
        ),
        "plan_ms_median": float(np.median(plan_ms)) if plan_ms else None,
        "plan_ms_p90": float(np.percentile(plan_ms, 90)) if plan_ms else None,
        "episodes": len(records),
        "seed": int(cfg.seed),
        "planner": None if kind == "random" else str(cfg.planner),
        "checkpoint": str(cfg.checkpoint) if kind == "learned" else None,
        "model": kind,
        "note": {"oracle": ORACLE_NOTE, "random": RANDOM_NOTE}.get(kind),
        "env": evaluation.env_id,
        "goal_protocol": str(cfg.goal),
        "budget": int(cfg.budget),
        "num_envs": len(evaluation.envs),
        "eval_seeds": [r.seed for r in records],
        "settings": settings,
        "timing": {
            "replans": t.replans,
            "encode_ms_per_replan": 1000 * t.encode_s / max(t.replans, 1),
            "planner_ms_per_replan": 1000 * t.planner_s / max(t.replans, 1),
            "model_ms_per_replan": 1000 * t.model_s / max(t.replans, 1),
            "env_ms_per_step": 1000 * t.env_s / max(t.env_steps, 1),
            "envs_per_replan": len(evaluation.envs),
        },
        "config": OmegaConf.to_container(cfg, resolve=True),
        "records": [
            {**asdict(r), "plan_ms_median": r.plan_ms_median} for r in records
        ],
    }


def summary_text(metrics: dict[str, Any]) -> str:
    """One screen: what was run and how it went."""
    plan = metrics["plan_ms_median"]
    lines = [
        "",
        f"{metrics['env']} | model {metrics['model']}"
        + (f" ({metrics['checkpoint']})" if metrics["checkpoint"] else "")
        + (f" | planner {metrics['planner']}" if metrics["planner"] else "")
        + f" | goal {metrics['goal_protocol']} | budget {metrics['budget']} steps"
        + f" | {metrics['episodes']} episodes, seed {metrics['seed']}",
        f"  success (end)        {100 * metrics['success_rate']:6.1f} %",
        f"  success (any step)   {100 * metrics['success_any_rate']:6.1f} %",
        f"  final joint error    {metrics['final_joint_error_mean']:.3f} rad mean, "
        f"{metrics['final_joint_error_median']:.3f} median",
        f"  final fingertip      {100 * metrics['final_fingertip_distance_mean']:.1f} cm mean",
    ]
    if plan is not None:
        timing = metrics["timing"]
        lines.append(
            f"  replanning           {plan:.0f} ms median, {metrics['plan_ms_p90']:.0f} ms p90 "
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
        "cem.samples=100 cem.iterations=10 horizon=3 energy=l2.",
    )
    parser.add_argument("--env", help="task name (reach)")
    parser.add_argument("--checkpoint", help="WorldModel directory or shipped name (reach)")
    parser.add_argument("--model", help="learned | oracle | random")
    parser.add_argument("--episodes", type=int, help="evaluation episodes (config: 10)")
    parser.add_argument("--seed", type=int, help="picks the evaluation seeds (config: 0)")
    parser.add_argument("--planner", help="cem | mppi | gradient")
    parser.add_argument("--goal", help="goal protocol: offset | uniform")
    parser.add_argument("--budget", type=int, help="env steps per episode (config: 50)")
    parser.add_argument("--num-envs", type=int, dest="num_envs",
                        help="episodes run in lockstep, planned in one call (config: 1)")
    parser.add_argument("--json", help="write the metrics to this file")
    parser.add_argument("--video", help="write one mp4 per episode (frame | goal) here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


FLAG_KEYS = ("env", "checkpoint", "model", "episodes", "seed", "planner", "goal", "budget",
             "num_envs")


def parse(argv: list[str]) -> tuple[argparse.Namespace, DictConfig]:
    """Flags plus key=value overrides -> (args, composed config); flags win."""
    args, rest = build_parser().parse_known_args(argv)
    for token in rest:
        if token.startswith("-") or "=" not in token:
            raise UserError(f"unrecognised argument {token!r} (flags, then key=value overrides)")
    cfg = load_config("mpc", rest)
    for key in FLAG_KEYS:
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    return args, cfg


def main(argv: list[str]) -> int:
    args, cfg = parse(argv)
    check_config(cfg)
    json_path = Path(args.json) if args.json else None
    if json_path is not None and (json_path.is_dir() or not json_path.parent.is_dir()):
        raise UserError(f"--json needs a file path in an existing folder, got {json_path}")
    try:
        metrics = evaluate(cfg, video_dir=args.video, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted: no metrics written", file=sys.stderr)
        return 130
    print(summary_text(metrics))
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(metrics, indent=2) + "\n")
        except OSError as exc:
            raise UserError(f"cannot write {json_path}: {exc.strerror}") from None
        print(f"  metrics: {json_path}")
    if args.video:
        print(f"  videos: {args.video}")
    return 0


if __name__ == "__main__":
    run_command(main)
