"""The evaluation episode loop: tasks stepped in lockstep by one policy, judged by the task.

Episode ``i`` resets with ``eval_seed(seed, i)`` = 1_000_000 + seed * 10_000 + i, disjoint from
the recording seeds 0, 1, 2, ... of ``envs.collect``. The policy acts until ``budget`` env
steps are spent, one ``policy.predict`` call per env step (the stable-baselines3 convention
that RL code uses too, planners/policies.py). The task's own ``is_success`` at the end of the
budget is the headline, success at any step is reported beside it, and the task's error
metrics (``metric_names``) are read from the last step's ``info``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planners.video import StepCaption

EVAL_SEED_BASE = 1_000_000
EVAL_SEED_STRIDE = 10_000
MAX_EVAL_SEED = 99_999  # eval seeds stay in [10^6, 10^9 + 10^6): below the distillation's 10^12


def eval_seed(seed: int, episode: int) -> int:
    """Reset seed of evaluation episode ``episode``: disjoint from recording seeds 0, 1, ...
    (``seed`` in [0, MAX_EVAL_SEED], ``episode`` in [0, EVAL_SEED_STRIDE))."""
    seed, episode = int(seed), int(episode)
    if not 0 <= seed <= MAX_EVAL_SEED:
        raise ValueError(f"the evaluation seed must be in [0, {MAX_EVAL_SEED}], got {seed}: "
                         "other values would reuse recording or training seeds")
    if not 0 <= episode < EVAL_SEED_STRIDE:
        raise ValueError(f"episode index must be in [0, {EVAL_SEED_STRIDE}), got {episode}")
    return EVAL_SEED_BASE + seed * EVAL_SEED_STRIDE + episode


@dataclass
class EpisodeRecord:
    """What one episode did; ``plan_ms`` holds the replanning latencies of the calls that
    planned it (shared with the other episodes of its batch), ``metrics`` the task's final
    error metrics."""

    index: int
    seed: int
    success: bool
    success_any: bool
    steps: int
    replans: int
    # the energy the planner PREDICTED for its last plan, not the final frame's energy: a low
    # value on a failed episode means the model believed the plan reaches the goal
    final_energy: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    plan_ms: list[float] = field(default_factory=list)

    @property
    def plan_ms_median(self) -> float:
        return float(np.median(self.plan_ms)) if self.plan_ms else 0.0

    def to_json(self) -> dict[str, Any]:
        record = {
            "index": self.index,
            "seed": self.seed,
            "success": self.success,
            "success_any": self.success_any,
            "steps": self.steps,
            "replans": self.replans,
            "final_energy": self.final_energy,
            **{f"final_{name}": value for name, value in self.metrics.items()},
            "plan_ms": self.plan_ms,
            "plan_ms_median": self.plan_ms_median,
        }
        return record


class EpisodeRunner:
    """Runs batches of episodes of ``tasks`` (one task instance per lockstep slot)."""

    def __init__(
        self,
        tasks: list[Any],
        policy: Any,
        budget: int,
        seed: int,
        goal_protocol: str,
        video: Callable[..., None] | None = None,
        reset_options: Callable[[int], dict[str, Any]] | None = None,
    ) -> None:
        self.tasks, self.policy, self.budget = tasks, policy, int(budget)
        self.seed, self.goal_protocol, self.video = int(seed), goal_protocol, video
        # episode index -> start and goal states (start_qpos, start_qvel, goal_qpos) taken
        # from elsewhere, e.g. a recorded held-out dataset; None: drawn from the eval seed
        self.reset_options = reset_options
        self.metric_names = tuple(tasks[0].metric_names)
        self.env_s = 0.0
        self.env_steps = 0

    def run_batch(self, indices: list[int], on_block: Callable[[], None]) -> list[EpisodeRecord]:
        tasks = self.tasks[: len(indices)]
        seeds = [eval_seed(self.seed, i) for i in indices]
        obs, infos = [], []
        for task, seed, index in zip(tasks, seeds, indices, strict=True):
            options = {"goal_protocol": self.goal_protocol}
            if self.reset_options is not None:
                options.update(self.reset_options(index))
            o, info = task.reset(seed=seed, options=options)
            obs.append(o)
            infos.append(info)
        goal_pixels = np.stack([info["goal_pixels"] for info in infos])
        frames = [[o["pixels"]] for o in obs] if self.video else None
        captions = [[StepCaption(0, self.budget, None, bool(i["is_success"]))] for i in infos]
        previews = PlanPreviews(tasks, self.policy) if self.video else None
        success_any = [False] * len(tasks)
        self.policy.bind(tasks, infos, seeds)
        starts = np.ones(len(tasks), dtype=bool)
        frameskip = int(self.policy.frameskip)
        steps = 0
        while steps < self.budget:
            batch = {key: np.stack([o[key] for o in obs]) for key in obs[0]}
            actions, _ = self.policy.predict({**batch, "goal_pixels": goal_pixels},
                                             episode_start=starts)
            starts[:] = False
            started = time.perf_counter()
            for e, task in enumerate(tasks):
                obs[e], _, _, _, infos[e] = task.step(np.asarray(actions[e], dtype=np.float32))
                success_any[e] = success_any[e] or bool(infos[e]["is_success"])
                if frames is not None:
                    frames[e].append(obs[e]["pixels"])
                    energy = self.policy.episode_info(e)["final_energy"]
                    captions[e].append(StepCaption(steps + 1, self.budget, energy,
                                                   bool(infos[e]["is_success"])))
                    previews.record(e)
            self.env_s += time.perf_counter() - started
            self.env_steps += len(tasks)
            steps += 1
            if steps % frameskip == 0 or steps == self.budget:
                on_block()

        records = []
        for e, info in enumerate(infos):
            extra = self.policy.episode_info(e)
            records.append(
                EpisodeRecord(
                    index=indices[e],
                    seed=seeds[e],
                    success=bool(info["is_success"]),
                    success_any=success_any[e],
                    steps=steps,
                    replans=int(extra["replans"]),
                    final_energy=extra["final_energy"],
                    metrics={name: float(info[name]) for name in self.metric_names},
                    plan_ms=list(extra["plan_ms"]),
                )
            )
            if frames is not None:
                self.video(indices[e], frames[e], goal_pixels[e], captions[e],
                           previews.frames(e))
        return records


class PlanPreviews:
    """For videos: the state the current plan is predicted to end in, rendered by the task from
    the joints the world model's state readout reads off the plan's last predicted latent (the
    planner's own belief, shown beside the truth); nothing for models without a readout."""

    def __init__(self, tasks: list[Any], policy: Any) -> None:
        self.tasks, self.policy = tasks, policy
        self.enabled = getattr(getattr(policy, "model", None), "readout", None) is not None
        if self.enabled:
            policy.keep_previews = True
        self._frames: list[list[np.ndarray | None]] = [[None] for _ in tasks]
        self._shown: list[tuple[np.ndarray | None, np.ndarray | None]] = [(None, None)] * len(tasks)

    def record(self, e: int) -> None:
        if not self.enabled:
            return
        qpos = self.policy.previews.get(e)
        last_qpos, last_frame = self._shown[e]
        if qpos is not None and qpos is not last_qpos:  # rendered once per replanning
            last_frame = self.tasks[e].unwrapped.render_state(qpos)
            self._shown[e] = (qpos, last_frame)
        self._frames[e].append(last_frame)

    def frames(self, e: int) -> list[np.ndarray | None] | None:
        return self._frames[e] if self.enabled else None
