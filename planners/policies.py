"""Actors of the evaluation loop and of RL code: the planner, the oracle and random actions.

Every policy follows stable-baselines3's calling convention::

    actions, _ = policy.predict(obs, state=None, episode_start=starts)  # one env step each

``obs`` is a batch (a vector env) or a single observation: the task's dict with the goal image
added (``{"pixels", "proprio", "goal_pixels"}``, see ``jepa_world.rl.GoalImageObservation``) or
the flat vector of ``jepa_world.rl.LatentObservation(..., goal=True)``. ``episode_start`` marks
the environments whose episode just began (all of them on the first call). The evaluation loop
of ``planners.mpc`` (planners/episodes.py) drives the same objects through ``predict``, so there
is one MPC loop. Only :class:`OraclePolicy` reads the simulator (``bind``: the tasks and the goal
states, which makes it an upper bound); the others see observations only.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from planners.base import (
    PlannerSettings,
    PlanResult,
    command_setting,
    make_settings,
    model_planner_settings,
    planning_defaults,
    shift_plan,
)
from planners.correction import OffsetCorrection
from planners.tail import PolicyTail


@dataclass
class PolicyStats:
    """Seconds spent per stage across a run, one latency per planner call, and the search
    iterations the environments' plans took (sampling planners; 0 for the others)."""

    encode_s: float = 0.0
    planner_s: float = 0.0
    model_s: float = 0.0
    replans: int = 0
    call_ms: list[float] = field(default_factory=list)
    iterations: int = 0
    plans: int = 0


def episode_seed(base: int, env: int, episode: int) -> int:
    """The noise seed of ``episode`` in slot ``env`` when the caller names none: distinct per
    slot and episode, fixed by the policy's ``seed``."""
    return int(np.random.SeedSequence([int(base) & 0xFFFFFFFF, env, episode]).generate_state(1)[0])


class EpisodeSlots:
    """What every policy keeps per environment slot: the episode's noise seed, its step count,
    the actions left of the current block and the replanning record."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.count = 0
        self._given: list[int | None] | None = None
        self._episodes: list[int] = []

    def resize(self, count: int) -> None:
        self.count = count
        self._episodes = [0] * count
        self.steps = [0] * count
        self.queue: list[list[np.ndarray]] = [[] for _ in range(count)]
        self.plan_ms: list[list[float]] = [[] for _ in range(count)]
        self.energy: list[float | None] = [None] * count

    def give_seeds(self, seeds: Sequence[int]) -> None:
        self._given = [int(s) for s in seeds]

    def start(self, env: int) -> int:
        """Reset slot ``env`` for a new episode; returns its noise seed."""
        if self._given is not None and env < len(self._given) and self._given[env] is not None:
            seed, self._given[env] = self._given[env], None  # a given seed serves one episode
        else:
            seed = episode_seed(self.seed, env, self._episodes[env])
        self._episodes[env] += 1
        self.steps[env], self.queue[env] = 0, []
        self.plan_ms[env], self.energy[env] = [], None
        return seed

    def starts(self, episode_start: Any, count: int) -> list[int]:
        """Slots whose episode begins now (every slot on the first call or a new batch size)."""
        if count != self.count:
            self.resize(count)
            return list(range(count))
        if episode_start is None:
            return []
        flags = np.asarray(episode_start, dtype=bool).reshape(-1)
        if flags.size == 1 and count > 1:
            flags = np.repeat(flags, count)
        if flags.size != count:
            raise ValueError(f"episode_start has {flags.size} entries for {count} environments")
        return [int(e) for e in np.flatnonzero(flags)]


def batch_observations(obs: Any) -> tuple[Any, int, bool]:
    """(batched obs, batch size, whether the caller passed a single observation)."""
    if isinstance(obs, dict):
        if "pixels" not in obs:
            raise ValueError(f"observation dict needs 'pixels', got keys {sorted(obs)}")
        pixels = np.asarray(obs["pixels"])
        if pixels.ndim == 3:
            return {k: np.asarray(v)[None] for k, v in obs.items()}, 1, True
        if pixels.ndim != 4:
            raise ValueError(f"pixels must be [H,W,3] or [E,H,W,3], got {pixels.shape}")
        return {k: np.asarray(v) for k, v in obs.items()}, pixels.shape[0], False
    array = np.asarray(obs, dtype=np.float32)
    if array.ndim == 1:
        return array[None], 1, True
    if array.ndim != 2:
        raise ValueError(f"flat observations must be [N] or [E,N], got {array.shape}")
    return array, array.shape[0], False


class RandomPolicy:
    """Uniform random actions in the action box, one generator per episode (a lower bound)."""

    kind = "random"

    def __init__(
        self, action_low: np.ndarray, action_high: np.ndarray, frameskip: int, seed: int = 0
    ) -> None:
        self.low, self.high = np.asarray(action_low), np.asarray(action_high)
        self.frameskip = int(frameskip)
        self.stats = PolicyStats()
        self.slots = EpisodeSlots(seed)
        self._rngs: list[np.random.Generator] = []

    def bind(self, tasks: list, infos: list, seeds: Sequence[int]) -> None:
        self.slots.give_seeds(seeds)

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        _, count, single = batch_observations(obs)
        starts = self.slots.starts(episode_start, count)
        if len(self._rngs) != count:
            self._rngs = [np.random.default_rng(0)] * count
        for e in starts:
            self._rngs[e] = np.random.default_rng(self.slots.start(e))
        actions = np.stack([rng.uniform(self.low, self.high) for rng in self._rngs[:count]])
        return (actions[0] if single else actions), None

    def episode_info(self, e: int) -> dict[str, Any]:
        return {"replans": 0, "final_energy": None, "plan_ms": []}

    def close(self) -> None:
        pass


class PlannerPolicy:
    """Receding-horizon planning with a world model as a policy: plan ``horizon`` blocks,
    execute the first block (``frameskip`` env steps) one step per ``predict`` call, then
    replan, warm-starting from the shifted plan.

    ``planner`` is a name (``cem``, ``mppi``, ``gradient``: the defaults of ``planners.mpc``,
    changed by keyword ``overrides`` such as ``samples=128``) or a plan function with its
    ``settings``. ``budget``: env steps per episode, when known (``shrink_horizon`` needs it).
    Each episode draws its planner noise from its own generator: the seed given to
    :meth:`bind` for it or, without one, a seed derived from ``seed``, the slot and the episode
    count, so results do not depend on how many episodes share a batch.

    ``proposal(z_now [E,K,D], goal [E,K,D], proprio [E,P] or None) -> [E,H,fs,A]`` (or
    [E,P,H,fs,A]) suggests sequences that a sampling planner scores first at every replanning
    step, e.g. a distilled policy rolled out in the world model
    (``jepa_world.rl.StudentPolicy.proposal``). ``tail`` (``planners.tail.PolicyTail``): a
    policy that continues every scored sequence in the world model, so that a short horizon
    judges moves by where they lead (``StudentPolicy.tail``).
    """

    kind = "learned"

    def __init__(
        self,
        model: Any,
        planner: str | Callable[..., PlanResult] = "cem",
        settings: PlannerSettings | None = None,
        *,
        warm_start: bool = True,
        shrink_horizon: bool = False,
        correction_gain: float | None = None,
        budget: int | None = None,
        seed: int = 0,
        proposal: Callable[[Tensor, Tensor, Tensor | None], Tensor] | None = None,
        tail: PolicyTail | None = None,
        **overrides: Any,
    ) -> None:
        self.model = model
        self.plan_fn, self.settings = _resolve_planner(model, planner, settings, overrides,
                                                       tail=tail is not None)
        if proposal is not None and "proposals" not in inspect.signature(self.plan_fn).parameters:
            raise ValueError("this planner takes no proposals: use a sampling planner (cem, mppi)")
        self.proposal = proposal
        self.settings.objective(model)  # the energy's terms fit this model (readout_weight)
        if tail is not None:
            if "tail" not in inspect.signature(self.plan_fn).parameters:
                raise ValueError("this planner takes no policy tail: use a sampling planner "
                                 "(cem, mppi)")
            tail.check_objective(self.settings.objective(model))
        self.tail = tail
        self.frameskip = int(model.frameskip)
        self.warm_start, self.shrink_horizon = bool(warm_start), bool(shrink_horizon)
        if correction_gain is not None:
            OffsetCorrection(correction_gain)  # validates the gain
        self.correction_gain = correction_gain
        self.budget = None if budget is None else int(budget)
        self.uses_proprio = int(getattr(model, "proprio_dim", 0) or 0) > 0
        self.stats = PolicyStats()
        self.slots = EpisodeSlots(seed)
        # videos: per slot, the joint positions the model's readout reads off the last plan's
        # predicted end (only with a readout and keep_previews on)
        self.keep_previews = False
        self.previews: dict[int, np.ndarray] = {}
        self._goal: Tensor | None = None
        self._warm: list[Tensor | None] = []
        self._generators: list[torch.Generator] = []
        self._corrections: list[OffsetCorrection | None] = []

    # ------------------------------------------------------------------ what the planner sees
    @torch.no_grad()
    def encode_goal(self, obs: Any, envs: list[int]) -> Tensor:
        if isinstance(obs, dict):
            if "goal_pixels" not in obs:
                raise ValueError("the observation holds no 'goal_pixels': wrap the env in "
                                 "jepa_world.rl.GoalImageObservation (or LatentObservation)")
            return self.model.encode(torch.from_numpy(obs["goal_pixels"][envs]))
        return self._layout(obs).goal_latent(obs[envs])

    @torch.no_grad()
    def encode_now(self, obs: Any, envs: list[int]) -> Tensor:
        if isinstance(obs, dict):
            return self.model.encode(torch.from_numpy(obs["pixels"][envs]))
        return self._layout(obs).latent(obs[envs])

    def proprio(self, obs: Any, envs: list[int]) -> Tensor | None:
        if not self.uses_proprio:
            return None
        if isinstance(obs, dict):
            if "proprio" not in obs:
                raise ValueError("this world model needs the observation's 'proprio'")
            return torch.from_numpy(np.asarray(obs["proprio"][envs], dtype=np.float32))
        return self._layout(obs).proprio(obs[envs])

    def _layout(self, flat: np.ndarray):
        from jepa_world.rl.layout import LatentLayout

        return LatentLayout.infer(self.model, flat.shape[1], goal=True)

    # ------------------------------------------------------------------ policy interface
    def bind(self, tasks: list, infos: list, seeds: Sequence[int]) -> None:
        """Seed the next episode of slots 0, 1, ... (the evaluation's seeds): each given seed
        serves one episode."""
        self.slots.give_seeds(seeds)

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """One env-step action per environment (stable-baselines3's convention); replans the
        environments whose planned block is spent."""
        batch, count, single = batch_observations(obs)
        self._start(batch, self.slots.starts(episode_start, count))
        spent = [e for e in range(count) if not self.slots.queue[e]]
        if spent:
            self._replan(batch, spent)
        actions = np.stack([self.slots.queue[e].pop(0) for e in range(count)])
        for e in range(count):
            self.slots.steps[e] += 1
        return (actions[0] if single else actions), None

    def replan(self, obs: Any, episode_start: Any = None) -> np.ndarray:
        """Plan now for every environment of ``obs`` and return their next blocks [E,k,A]
        (what ``predict`` then executes step by step); an expert's label in DAgger."""
        batch, count, _ = batch_observations(obs)
        self._start(batch, self.slots.starts(episode_start, count))
        self._replan(batch, list(range(count)))
        return np.stack([np.stack(self.slots.queue[e]) for e in range(count)])

    def episode_info(self, e: int) -> dict[str, Any]:
        return {
            "replans": len(self.slots.plan_ms[e]),
            "final_energy": self.slots.energy[e],
            "plan_ms": self.slots.plan_ms[e],
        }

    def close(self) -> None:
        """Release what the model holds (the oracle's rollout threads)."""
        if hasattr(self.model, "close"):
            self.model.close()

    # ------------------------------------------------------------------ internals
    def _start(self, obs: Any, envs: list[int]) -> None:
        count = self.slots.count
        if len(self._warm) != count:
            self._warm = [None] * count
            self._generators = [torch.Generator() for _ in range(count)]
            self._corrections = [None] * count
            self._goal = None
        if not envs:
            return
        for e in envs:
            self._generators[e].manual_seed(self.slots.start(e))
            self._warm[e] = None
            self.previews.pop(e, None)
            gain = self.correction_gain
            self._corrections[e] = OffsetCorrection(gain) if gain is not None else None
        started = time.perf_counter()
        goals = self.encode_goal(obs, envs)
        self.stats.encode_s += time.perf_counter() - started
        if self._goal is None or self._goal.shape[0] != count:
            self._goal = goals.new_zeros((count, *goals.shape[1:]))
        self._goal[envs] = goals

    def _replan(self, obs: Any, envs: list[int]) -> None:
        groups: dict[int, list[int]] = {}
        for e in envs:
            groups.setdefault(self._blocks_left(e), []).append(e)
        for group in groups.values():
            self._plan_group(obs, group)

    def _plan_group(self, obs: Any, envs: list[int]) -> None:
        started = time.perf_counter()
        z_now = self.encode_now(obs, envs)
        proprio = self.proprio(obs, envs)
        encoded = time.perf_counter()
        goal = self._goal[envs]
        if self.correction_gain is not None:
            goal = torch.cat([self._corrections[e].goal(goal[i:i + 1], z_now[i:i + 1])
                              for i, e in enumerate(envs)])
        warm = [self._warm[e] for e in envs]
        init = None if any(w is None for w in warm) else torch.stack(warm)
        if init is None and any(w is not None for w in warm):
            init = self._fill_missing(warm)
        settings = self._settings_for(self._steps_left(envs[0]))
        extra = {}
        if self.proposal is not None:
            proposed = self.proposal(z_now, goal, proprio)
            extra["proposals"] = proposed if proposed.dim() == 5 else proposed.unsqueeze(1)
        if self.tail is not None:
            extra["tail"] = self.tail
        result = self.plan_fn(
            self.model, z_now, goal, proprio=proprio, init_mean=init,
            generator=[self._generators[e] for e in envs], settings=settings, **extra,
        )
        if self.correction_gain is not None:
            self._expect(z_now, result.actions[:, :1], proprio, envs)
        blocks = result.actions[:, 0].detach().cpu().numpy()
        done = time.perf_counter()
        self.stats.encode_s += encoded - started
        self.stats.planner_s += done - encoded
        self.stats.model_s += float(result.info.get("model_s", 0.0))
        self.stats.replans += 1
        self.stats.call_ms.append(1000.0 * (done - started))
        ran = result.info.get("iterations_per_env")
        if ran is not None:
            self.stats.iterations += int(ran.sum())
            self.stats.plans += len(envs)
        shifted = shift_plan(result.actions.detach(), 1) if self.warm_start else None
        if self.keep_previews:
            self._preview(z_now, result.actions, proprio, envs)
        for i, e in enumerate(envs):
            todo = min(self.frameskip, self._steps_left(e))
            self.slots.queue[e] = list(blocks[i, :todo])
            self.slots.plan_ms[e].append(round(1000.0 * (done - started), 3))
            self.slots.energy[e] = float(result.energy[i])
            self._warm[e] = None if shifted is None else shifted[i]

    @torch.no_grad()
    def _preview(self, z_now: Tensor, actions: Tensor, proprio: Tensor | None,
                 envs: list[int]) -> None:
        """Where the chosen plan ends, read off its predicted last latent by the model's state
        readout (joint positions), for videos; nothing without a readout."""
        readout = getattr(self.model, "readout", None)
        if readout is None:
            return
        from jepa_world.readout.model import features_to_qpos

        final = self.model.rollout(z_now, actions, proprio)[:, -1]
        qpos = features_to_qpos(readout(final).float(), readout.config.periodic)
        for i, e in enumerate(envs):
            self.previews[e] = qpos[i].cpu().numpy().astype(np.float64)

    def _fill_missing(self, warm: list[Tensor | None]) -> Tensor:
        """Warm starts for a group where some episodes just began: theirs is the box middle,
        which is what the planners start from without one."""
        like = next(w for w in warm if w is not None)
        middle = 0.5 * (self.settings.action_low + self.settings.action_high)
        return torch.stack([w if w is not None else torch.full_like(like, middle) for w in warm])

    def _expect(self, z_now: Tensor, first: Tensor, proprio: Tensor | None,
                envs: list[int]) -> None:
        """Each episode's correction remembers its row of one batched prediction."""
        expected = self._corrections[envs[0]].expect(self.model, z_now, first, proprio)
        for i, e in enumerate(envs):
            self._corrections[e].expected = expected[i:i + 1]

    def _steps_left(self, e: int) -> int:
        if self.budget is None:
            return self.frameskip * self.settings.horizon
        return max(self.budget - self.slots.steps[e], 1)

    def _blocks_left(self, e: int) -> int:
        return -(-self._steps_left(e) // self.frameskip)

    def _settings_for(self, steps_left: int) -> PlannerSettings:
        """The settings, with the horizon cut to the blocks that still fit into the budget when
        ``shrink_horizon`` is set (the last step weights are kept)."""
        settings = self.settings
        blocks_left = -(-steps_left // self.frameskip)
        if not self.shrink_horizon or blocks_left >= settings.horizon:
            return settings
        weights = settings.step_weights
        return dataclasses.replace(
            settings,
            horizon=blocks_left,
            step_weights=None if weights is None else tuple(weights[-blocks_left:]),
        )


def _resolve_planner(
    model: Any, planner: Any, settings: PlannerSettings | None, overrides: dict[str, Any],
    tail: bool = False,
) -> tuple[Callable[..., PlanResult], PlannerSettings]:
    if isinstance(planner, str):
        from planners import get_planner

        plan_fn, settings_cls = get_planner(planner)
        if settings is None:
            overrides = {**command_defaults(model, planner, overrides, tail=tail), **overrides}
        return plan_fn, make_settings(settings_cls, settings, overrides)
    if not callable(planner):
        raise TypeError(f"planner must be a name or a plan function, got {type(planner).__name__}")
    if settings is None:
        raise ValueError("a plan function needs its settings (a PlannerSettings instance)")
    if overrides:
        settings = make_settings(type(settings), settings, overrides)
    return planner, settings


def command_defaults(model: Any, planner: str, overrides: dict[str, Any], *,
                     tail: bool = False) -> dict[str, Any]:
    """The settings ``planners.mpc`` plans with by default (configs/mpc.yaml, the horizon,
    energy steps and, without a policy ``tail``, polish the model was built for), so that the
    policy acts as the command does."""
    section = command_setting(planner)
    horizon, energy_steps = planning_defaults(
        model, overrides.get("horizon"), overrides.get("energy_steps")
    )
    return {
        **model_planner_settings(model, planner, section, tail=tail),
        "horizon": horizon,
        "energy_steps": energy_steps,
        "metric": command_setting("energy"),
        "step_weights": command_setting("step_weights"),
        "repeat_in_block": command_setting("repeat_in_block"),
    }


class OraclePolicy(PlannerPolicy):
    """The same planner searching the true simulator from the true state towards the goal
    state (``planners.oracle.OracleModel``): an upper bound, not a learned result."""

    kind = "oracle"

    def bind(self, tasks: list, infos: list, seeds: Sequence[int]) -> None:
        super().bind(tasks, infos, seeds)
        self._tasks, self._infos = list(tasks), list(infos)

    def encode_goal(self, obs: Any, envs: list[int]) -> Tensor:
        return self.model.encode_state(np.stack([self._infos[e]["goal_qpos"] for e in envs]))

    def encode_now(self, obs: Any, envs: list[int]) -> Tensor:
        states = [self._tasks[e].get_state() for e in envs]
        return self.model.encode_state(
            np.stack([s[0] for s in states]), np.stack([s[1] for s in states])
        )
