"""stable-worldmodel's environments as goal-image tasks (optional extra ``jepa-world[swm]``).

The peers publish their numbers on stable-worldmodel's own environments; these adapters make
two of them ordinary jepa-world tasks, so that ``envs.collect``, ``jepa_world.build`` and
``planners.mpc`` run on the very physics, renders and success checks of that benchmark:

- ``swm:PushT-v1`` (:class:`SwmPushT`): ``swm/PushT-v1`` on pymunk. Positions are
  [agent x, agent y, block x, block y, block angle] in its 512-unit world, velocities the
  agent's (its 7-D ``state`` split in two). Success is its own ``eval_state``: agent and block
  positions within 20 units (4-D L2) and the block's angle within pi/9. The green T drawn in
  every frame is a fixed pose, the same in every image; the goal is only in the goal image.
- ``swm:ReacherDMControl-v0`` (:class:`SwmReacher`): dm_control's reacher with the
  ``qpos_match`` task; success is its own check, every joint within 0.05 rad of the goal pose
  without angle wrapping; the target sphere is hidden (it is not the goal).

Starts are drawn like theirs, goals by two protocols: ``offset``, the state reached after
``goal_offset_steps`` (25) steps of their recording policy from the start (``WeakPolicy`` for
Push-T, uniform random actions for the reacher): the shape of their evaluation, whose goal is
the recorded state 25 steps after the start; ``uniform``, their own random goal. The planner
sees the proprioception of the agent only (never the block), scaled to about unit size.
``import stable_worldmodel`` happens on the first task built, never when ``envs`` is imported.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.registry import MissingExtraError
from envs.task import GoalImageTask, joint_sincos

__all__ = ["MissingExtraError", "SwmPushT", "SwmReacher", "SwmTask", "import_swm",
           "swm_task_class"]

EXTRA_HINT = 'pip install "jepa-world[swm]"'
PUSHT_WORLD = 512.0  # side of Push-T's world in its own units
PUSHT_PROPRIO_SCALE = 1.0 / PUSHT_WORLD
REACHER_SPEED_SCALE = 0.1  # joint speeds reach tens of rad/s; proprio stays near unit size


def import_swm() -> Any:
    """``stable_worldmodel`` (which registers its ``swm/`` ids with Gymnasium), or one line
    saying how to install it. Its import chatter (Atari banners, warnings) is kept off stdout."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="ale-py not found")  # Atari: not used
            import stable_worldmodel
    except ImportError as exc:
        raise MissingExtraError(
            f"stable-worldmodel tasks need the optional extra: {EXTRA_HINT} ({exc})"
        ) from None
    return stable_worldmodel


def swm_task_class(env: str) -> type[SwmTask]:
    """The adapter class of a registered stable-worldmodel task (a ValueError otherwise)."""
    from gymnasium.envs.registration import load_env_creator

    import envs

    task_class = load_env_creator(envs.TASKS[envs.short_name(env)].entry_point)
    if not issubclass(task_class, SwmTask):
        known = ", ".join(name for name in envs.known_names() if name.startswith("swm:"))
        raise ValueError(f"{env} is not a stable-worldmodel task (known: {known})")
    return task_class


class SwmTask(GoalImageTask):
    """A goal-image task on a stable-worldmodel environment; subclasses say how its state is
    read, set, stepped and rendered, and judge success with the environment's own check."""

    swm_id: ClassVar[str] = ""
    swm_kwargs: ClassVar[dict[str, Any]] = {}
    has_oracle: ClassVar[bool] = False  # MuJoCo underneath: planners.oracle can roll it out
    state_keys: ClassVar[tuple[str, ...]] = ("qpos", "qvel")

    def __init__(
        self,
        image_size: int = 64,
        render_mode: str | None = "rgb_array",
        goal_protocol: str | None = None,
        goal_offset_steps: int = 25,
    ) -> None:
        import_swm()
        self.swm_env = gym.make(self.swm_id, disable_env_checker=True,
                                **self.make_kwargs(int(image_size)))
        self.inner = self.swm_env.unwrapped
        self._setup_task(
            image_size, render_mode, goal_protocol or self.goal_protocols[0], goal_offset_steps,
            self.proprio_limits(),
            action_low=self.swm_env.action_space.low, action_high=self.swm_env.action_space.high,
            dt=self.step_seconds(),
        )
        self._clear_simulator()
        self.goal_qpos = self.get_state()[0]

    # ------------------------------------------------------------------ what subclasses say
    def make_kwargs(self, image_size: int) -> dict[str, Any]:
        """Keyword arguments of ``gym.make`` for this image size."""
        return dict(self.swm_kwargs)

    def step_seconds(self) -> float:
        """Simulated seconds per env step."""
        raise NotImplementedError

    def proprio_limits(self) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def proprio_from_info(info: dict[str, Any]) -> Any:
        """``proprio()`` computed from their environment's info keys (what their planners
        receive), so that a world model trained here reads the same numbers there."""
        raise NotImplementedError

    # ------------------------------------------------------------------ their harness
    # What planners.swm_eval needs to run their World on this environment as this adapter
    # sees it (frames from their renderer at the same size) and to start our runner from the
    # states of their recorded datasets.
    @classmethod
    def their_make_kwargs(cls, image_size: int) -> dict[str, Any]:
        return dict(cls.swm_kwargs)

    @classmethod
    def their_pre_wrappers(cls, image_size: int) -> list[Any]:
        return []

    @classmethod
    def their_recording_policy(cls, seed: int) -> Any:
        from stable_worldmodel.policy import RandomPolicy

        return RandomPolicy(seed=seed)

    @classmethod
    def their_callables(cls) -> list[dict[str, Any]]:
        """World.evaluate's setup calls: the start state, then the goal, from dataset keys."""
        raise NotImplementedError

    @classmethod
    def reset_options_from(cls, dataset: Any, episode: int, start: int,
                           offset: int) -> dict[str, np.ndarray]:
        """Our reset options for their evaluation pair: the state at ``start`` of a recorded
        ``episode`` and the goal ``offset`` steps later."""
        (chunk,) = dataset.load_chunk(np.array([episode]), np.array([start]),
                                      np.array([start + offset + 1]))
        return cls.first_and_last_states(chunk)

    @classmethod
    def first_and_last_states(cls, chunk: dict[str, Any]) -> dict[str, np.ndarray]:
        """``start_qpos``, ``start_qvel`` (the chunk's first step) and ``goal_qpos`` (its
        last) from the columns their World.collect records for this environment."""
        raise NotImplementedError

    def close(self) -> None:
        self.swm_env.close()


# ---------------------------------------------------------------------------- Push-T
class SwmPushT(SwmTask):
    """stable-worldmodel's Push-T (pymunk): push the T to the goal pose shown in an image."""

    swm_id = "swm/PushT-v1"
    metric_names = ("position_error", "angle_error")
    metric_units = {"position_error": "units of 512", "angle_error": "rad"}
    state_keys = ("qpos", "qvel", "block")
    probe_targets = ("block",)
    recording_policies = ("weak",)
    POSITION_TOLERANCE, ANGLE_TOLERANCE = 20.0, np.pi / 9  # their eval_state, for the docs

    def make_kwargs(self, image_size: int) -> dict[str, Any]:
        return {"resolution": image_size, "render_mode": "rgb_array"}

    @classmethod
    def their_make_kwargs(cls, image_size: int) -> dict[str, Any]:
        return {"resolution": image_size}

    @classmethod
    def their_recording_policy(cls, seed: int) -> Any:
        from stable_worldmodel.envs.pusht.expert_policy import WeakPolicy

        return WeakPolicy(seed=seed)

    @classmethod
    def their_callables(cls) -> list[dict[str, Any]]:
        return [{"method": "_set_state", "args": {"state": {"value": "state"}}},
                {"method": "_set_goal_state", "args": {"goal_state": {"value": "goal_state"}}}]

    @classmethod
    def first_and_last_states(cls, chunk: dict[str, Any]) -> dict[str, np.ndarray]:
        state = np.asarray(chunk["state"], np.float64)
        return {"start_qpos": state[0, :5], "start_qvel": state[0, 5:7],
                "goal_qpos": state[-1, :5]}

    def step_seconds(self) -> float:
        return 1.0 / float(self.inner.control_hz)

    def proprio_limits(self) -> np.ndarray:
        return np.full(4, 2.0, np.float32)

    def state_sizes(self) -> tuple[int, int]:
        return 5, 2

    def _clear_simulator(self) -> None:
        # their reset rebuilds the pymunk space; the state is set right after
        self.swm_env.reset(seed=0)

    def sample_start(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self._random_pose(), None

    def sample_uniform_goal(self, start_qpos: np.ndarray) -> np.ndarray:
        return self._random_pose()

    def on_goal_set(self) -> None:
        # their check reads angles in [0, 2 pi), as their state reports them
        self.goal_qpos[4] = np.mod(self.goal_qpos[4], 2 * np.pi)

    def _random_pose(self) -> np.ndarray:
        """Agent and block drawn uniformly from the ranges of their variation space."""
        space = self.inner.variation_space
        draw = []
        for part, key in (("agent", "start_position"), ("block", "start_position"),
                          ("block", "angle")):
            box = space[part][key]
            draw.append(np.atleast_1d(self.np_random.uniform(box.low, box.high, box.shape)))
        return np.concatenate(draw).astype(np.float64)

    def offset_action(self) -> np.ndarray:
        return self._offset_policy(self.np_random)

    def sample_goal(self, protocol: str, start_qpos: np.ndarray,
                    start_qvel: np.ndarray | None) -> np.ndarray:
        if protocol == "offset":
            self._offset_policy = self.make_recording_policy("weak", 0.0, 1.0)
            self._offset_policy.reset(self.np_random)
        return super().sample_goal(protocol, start_qpos, start_qvel)

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray | None = None) -> None:
        qpos = np.asarray(qpos, np.float64)
        qvel = np.zeros(2) if qvel is None else np.asarray(qvel, np.float64)
        if qpos.shape != (5,) or qvel.shape != (2,) or not np.all(np.isfinite(qpos)):
            raise ValueError(f"Push-T qpos must be 5 finite values and qvel 2, got "
                             f"{qpos.shape} and {qvel.shape}")
        env = self.inner
        env.block.velocity = (0.0, 0.0)  # at rest: their state has no block velocity
        env.block.angular_velocity = 0.0
        env._set_state(np.concatenate([qpos, qvel]))
        # their setter takes one physics step, which moves a moving agent: put it back exactly
        env.agent.position, env.agent.velocity = tuple(qpos[:2]), tuple(qvel)
        env.block.position, env.block.angle = tuple(qpos[2:4]), float(qpos[4])
        env.block.velocity, env.block.angular_velocity = (0.0, 0.0), 0.0
        for body in (env.agent, env.block):
            env.space.reindex_shapes_for_body(body)

    def get_state(self) -> tuple[np.ndarray, np.ndarray]:
        state = self.inner._get_obs()
        return state[:5].copy(), state[5:].copy()

    def _simulate(self, action: np.ndarray) -> None:
        self.swm_env.step(np.asarray(action, np.float32))

    def _render_pixels(self) -> np.ndarray:
        return np.ascontiguousarray(self.inner.render(), dtype=np.uint8)

    def proprio(self) -> np.ndarray:
        """Their proprio (agent position and velocity), in units of the world's side."""
        qpos, qvel = self.get_state()
        return np.concatenate([qpos[:2], qvel]) * PUSHT_PROPRIO_SCALE

    @staticmethod
    def proprio_from_info(info: dict[str, Any]) -> Any:
        """``proprio()`` from their environment's info (``proprio`` [..., 4], their units)."""
        return info["proprio"] * PUSHT_PROPRIO_SCALE

    def task_metrics(self) -> dict[str, Any]:
        qpos, qvel = self.get_state()
        goal = np.concatenate([self.goal_qpos, np.zeros(2)])
        success, _ = self.inner.eval_state(goal, np.concatenate([qpos, qvel]))
        turn = abs(goal[4] - qpos[4]) % (2 * np.pi)
        return {
            "position_error": float(np.linalg.norm(goal[:4] - qpos[:4])),
            "angle_error": float(min(turn, 2 * np.pi - turn)),
            "is_success": bool(success),
        }

    def state_arrays(self) -> dict[str, np.ndarray]:
        qpos, qvel = self.get_state()
        return {"qpos": qpos, "qvel": qvel, "block": qpos[2:5].copy()}

    def make_recording_policy(self, name: str, smoothing: float, scale: float) -> Any:
        if name != "weak":
            return super().make_recording_policy(name, smoothing, scale)
        return _WeakPushPolicy(self)

    def episode_stats(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        block = arrays["block"]
        shift = np.linalg.norm(block[:, :2] - block[0, :2], axis=-1).max()
        return {"block_moved": float(shift > 1.0), "block_shift_max": float(shift)}


class _WeakPushPolicy:
    """Their ``WeakPolicy`` (random actions that keep the agent near the block), seeded from
    the recorder's generator so that a recording is reproducible."""

    def __init__(self, task: SwmPushT) -> None:
        from stable_worldmodel.envs.pusht.expert_policy import WeakPolicy

        self.policy = WeakPolicy()
        self.policy.set_env(_AsVectorEnv(task.swm_env))

    def reset(self, rng: np.random.Generator) -> None:
        self.policy.set_seed(int(rng.integers(2**31)))

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.policy.get_action({}), np.float32).reshape(-1)


class _AsVectorEnv:
    """One env seen as a vector of one: what their collection policies act on."""

    def __init__(self, env: gym.Env) -> None:
        self.envs, self.spec = [env], env.spec
        space = env.action_space
        self.action_space = gym.spaces.Box(space.low[None], space.high[None], dtype=space.dtype)


# ---------------------------------------------------------------------------- DMC reacher
class SwmReacher(SwmTask):
    """stable-worldmodel's DMC reacher (``qpos_match``): bring both joints to a goal pose."""

    swm_id = "swm/ReacherDMControl-v0"
    swm_kwargs = {"task": "qpos_match"}
    has_oracle = True
    metric_names = ("joint_error",)
    metric_units = {"joint_error": "rad"}
    probe_targets = ("qpos",)

    def step_seconds(self) -> float:
        return float(self.inner.action_repeat * self._dm_env.control_timestep())

    @classmethod
    def their_pre_wrappers(cls, image_size: int) -> list[Any]:
        return [lambda env: _RenderAt(env, image_size)]

    @classmethod
    def their_callables(cls) -> list[dict[str, Any]]:
        return [{"method": "set_state", "args": {"qpos": {"value": "qpos"},
                                                 "qvel": {"value": "qvel"}}},
                {"method": "set_target_qpos", "args": {"target_qpos": {"value": "goal_qpos"}}}]

    @classmethod
    def first_and_last_states(cls, chunk: dict[str, Any]) -> dict[str, np.ndarray]:
        qpos = np.asarray(chunk["qpos"], np.float64)
        return {"start_qpos": qpos[0], "start_qvel": np.asarray(chunk["qvel"], np.float64)[0],
                "goal_qpos": qpos[-1]}

    @property
    def model(self) -> Any:
        """The MuJoCo model under dm_control's physics (what the simulator oracle rolls out)."""
        return self._physics.model.ptr

    @property
    def frame_skip(self) -> int:
        """Physics steps per env step: their action repeat times dm_control's substeps."""
        return int(self.inner.action_repeat * self._sub_steps())

    def _sub_steps(self) -> int:
        return int(round(self._dm_env.control_timestep() / self._physics.timestep()))

    def oracle_cost(self, qpos: np.ndarray, goal_qpos: np.ndarray) -> np.ndarray:
        """Per-joint errors as their success check reads them (not wrapped)."""
        return np.abs(np.asarray(qpos)[..., :2] - np.asarray(goal_qpos)[..., :2])

    @property
    def _dm_env(self) -> Any:
        return self.inner.env  # dm_control's environment (behind its action-scale wrapper)

    @property
    def _physics(self) -> Any:
        return self.inner.env.physics

    def proprio_limits(self) -> np.ndarray:
        return np.array([1, 1, 1, 1, 10, 10], np.float32)

    def _clear_simulator(self) -> None:
        self.swm_env.reset(seed=0)
        self._physics.named.model.geom_rgba["target", 3] = 0.0  # not the goal: hidden
        spec = self._dm_env.action_spec()
        if not (np.all(spec.minimum == -1.0) and np.all(spec.maximum == 1.0)):
            raise ValueError(f"{self.swm_id}: expected actions in [-1, 1], got {spec}")

    def sample_start(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self._random_pose(), None

    def sample_uniform_goal(self, start_qpos: np.ndarray) -> np.ndarray:
        return self._random_pose()

    def _random_pose(self) -> np.ndarray:
        """As dm_control draws a reacher's start: the free shoulder in [-pi, pi), the limited
        wrist uniform in its range."""
        model = self._physics.model
        pose = np.empty(model.nq)
        for joint in range(model.njnt):
            low, high = model.jnt_range[joint] if model.jnt_limited[joint] else (-np.pi, np.pi)
            pose[model.jnt_qposadr[joint]] = self.np_random.uniform(low, high)
        return pose

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray | None = None) -> None:
        nq, nv = self.state_sizes()
        qpos = np.asarray(qpos, np.float64)
        qvel = np.zeros(nv) if qvel is None else np.asarray(qvel, np.float64)
        if qpos.shape != (nq,) or qvel.shape != (nv,) or not np.all(np.isfinite(qpos)):
            raise ValueError(f"reacher qpos and qvel must be {nq} and {nv} finite "
                             f"values, got {qpos.shape} and {qvel.shape}")
        self.inner.set_state(qpos, qvel)

    def state_sizes(self) -> tuple[int, int]:
        return int(self._physics.model.nq), int(self._physics.model.nv)

    def get_state(self) -> tuple[np.ndarray, np.ndarray]:
        data = self._physics.data
        return np.array(data.qpos, np.float64), np.array(data.qvel, np.float64)

    def _simulate(self, action: np.ndarray) -> None:
        """Their step (``action_repeat`` control steps), on the physics directly: dm_control's
        own step would end the episode at its time limit or on success and then silently
        reset the arm to a random pose on the next call."""
        physics, task = self._physics, self._dm_env.task
        sub_steps = self._sub_steps()
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        for _ in range(self.inner.action_repeat):
            task.before_step(action, physics)
            physics.step(sub_steps)
            task.after_step(physics)

    def _render_pixels(self) -> np.ndarray:
        size = self.image_size
        return np.ascontiguousarray(self.inner.render(width=size, height=size), dtype=np.uint8)

    def proprio(self) -> np.ndarray:
        """Joint angles as (sin, cos) and joint speeds: what the arm senses of itself."""
        return self.proprio_from_info(dict(zip(("qpos", "qvel"), self.get_state(), strict=True)))

    @staticmethod
    def proprio_from_info(info: dict[str, Any]) -> Any:
        """``proprio()`` from their environment's info (``qpos``, ``qvel`` [..., 2]), numpy
        arrays or torch tensors alike."""
        qpos, qvel = info["qpos"], info["qvel"]
        if isinstance(qpos, np.ndarray):
            return np.concatenate([joint_sincos(qpos), qvel * REACHER_SPEED_SCALE], axis=-1)
        import torch

        sincos = torch.stack([torch.sin(qpos), torch.cos(qpos)], dim=-1).flatten(-2)
        return torch.cat([sincos, qvel * REACHER_SPEED_SCALE], dim=-1)

    def task_metrics(self) -> dict[str, Any]:
        """Their ``qpos_match`` check, called with the goal as its target."""
        qpos, _ = self.get_state()
        task = self._dm_env.task
        saved, task.target_qpos = task.target_qpos, np.asarray(self.goal_qpos, np.float64)
        try:
            success = task.get_termination(self._physics) is not None
        finally:
            task.target_qpos = saved
        return {"joint_error": float(np.abs(qpos - self.goal_qpos).max()),
                "is_success": bool(success)}


class _RenderAt(gym.Wrapper):
    """Their DMC environments render at 224 px unless asked; this asks for ``size``."""

    def __init__(self, env: gym.Env, size: int) -> None:
        super().__init__(env)
        self.size = int(size)

    def render(self) -> np.ndarray:
        return self.env.unwrapped.render(width=self.size, height=self.size)
