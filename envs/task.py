"""What a goal-image task provides: the one interface every jepa-world command works through.

A goal-image task is a Gymnasium env over a MuJoCo simulation whose observations are
``{"pixels": uint8 [S,S,3], "proprio": float32 [P]}`` and whose goals are images. Subclasses
(reach, the Gymnasium adapter, Push-T, a user's own task) say only what is task-specific:
how a start is drawn, how the ``uniform`` goal is drawn, what the proprioception is, the error
metrics and success, and which state arrays a dataset records. Everything else is shared here:
reset options, the ``offset`` goal protocol, goal images rendered from the goal state with the
markers that would give the goal away hidden, stepping, rendering and ``get_state`` /
``set_state`` for the simulator oracle.

``reset(options=...)`` takes ``goal_protocol`` (one of ``goal_protocols``), ``start_qpos``,
``start_qvel`` and ``goal_qpos`` (full simulator positions). ``info`` always carries
``is_success``, the task's ``metric_names``, ``qpos`` / ``qvel`` and, after reset,
``goal_pixels`` and ``goal_qpos`` (the goal state, for evaluation only: a fair planner never
reads it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs._gl import import_mujoco, make_renderer

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 224
RESET_OPTIONS = ("goal_protocol", "start_qpos", "start_qvel", "goal_qpos")


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Wrap angles to (-pi, pi]; joint errors must not count full turns."""
    angle = np.asarray(angle, dtype=np.float64)
    return np.pi - np.mod(np.pi - angle, 2.0 * np.pi)


def joint_error(qpos: np.ndarray, goal_qpos: np.ndarray) -> np.ndarray:
    """Per-joint absolute error with wrapping (the peers' qpos_match check forgets the wrap)."""
    return np.abs(wrap_angle(np.asarray(qpos) - np.asarray(goal_qpos)))


def hinge_error(qpos: np.ndarray, goal_qpos: np.ndarray, wrap: np.ndarray) -> np.ndarray:
    """Per-joint absolute error, wrapped only where ``wrap`` is true: a limited joint cannot
    reach its goal through +-pi, so its distance is the plain difference."""
    diff = np.asarray(qpos, np.float64) - np.asarray(goal_qpos, np.float64)
    return np.abs(np.where(wrap, wrap_angle(diff), diff))


def two_link_metrics(
    qpos: np.ndarray, goal_qpos: np.ndarray, tip: np.ndarray, goal_tip: np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """Errors and success of a two-link reacher: every joint within ``threshold``, wrapped."""
    errors = joint_error(qpos, goal_qpos)
    return {
        "joint_error": float(errors.max()),
        "joint_errors": errors.astype(np.float32),
        "fingertip_distance": float(np.linalg.norm(np.asarray(tip) - goal_tip)),
        "is_success": bool(np.all(errors <= threshold)),
    }


def joint_sincos(qpos: np.ndarray) -> np.ndarray:
    """(sin, cos) of each joint angle, interleaved: a wrap-safe regression target."""
    qpos = np.asarray(qpos, np.float64)
    return np.stack([np.sin(qpos), np.cos(qpos)], axis=-1).reshape(*qpos.shape[:-1], -1)


class GoalImageTask(gym.Env):
    """Base class of goal-image tasks on a MuJoCo ``model`` / ``data`` pair.

    Subclasses set ``self.model``, ``self.data``, ``self.frame_skip`` and ``self.camera`` (a
    camera name or a ``mujoco.MjvCamera``) before calling :meth:`_setup`, and implement the
    hooks below. Class attributes describe the task to the commands: ``metric_names`` (info keys
    of its error metrics, the headline first), ``metric_units``, ``state_keys`` (arrays a
    dataset records besides actions / proprio / rewards), ``probe_targets`` (default
    frozen-probe targets, a subset of ``state_keys``) and ``recording_policies`` (the task's
    own exploration policies for ``envs.collect --policy``, built by
    :meth:`make_recording_policy`).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 50}
    goal_protocols: ClassVar[tuple[str, ...]] = ("offset", "uniform")
    metric_names: ClassVar[tuple[str, ...]] = ()
    metric_units: ClassVar[dict[str, str]] = {}
    state_keys: ClassVar[tuple[str, ...]] = ("qpos", "qvel")
    probe_targets: ClassVar[tuple[str, ...]] = ("qpos",)
    recording_policies: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ construction
    def _load_asset(self, filename: str, frame_skip: int, camera: str) -> None:
        """Build ``model`` / ``data`` from an XML file in envs/assets."""
        mujoco = import_mujoco()
        xml = resources.files("envs").joinpath("assets", filename).read_text()
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self.frame_skip = int(frame_skip)
        self.camera = camera

    def _setup(
        self,
        image_size: int,
        render_mode: str | None,
        goal_protocol: str,
        goal_offset_steps: int,
        proprio_limits: np.ndarray,
        hidden_geoms: Sequence[int] = (),  # geom ids
    ) -> None:
        """Validate the shared settings and build the spaces (call at the end of __init__)."""
        self._mujoco = import_mujoco()
        for geom in hidden_geoms:  # goal markers: invisible in every image, goal images included
            self.model.geom_rgba[geom, 3] = 0.0
        ctrl = self.model.actuator_ctrlrange
        limited = self.model.actuator_ctrllimited.astype(bool)
        self._ctrl_low = np.where(limited, ctrl[:, 0], -np.inf)
        self._ctrl_high = np.where(limited, ctrl[:, 1], np.inf)
        self._renderer = None  # created lazily: GL contexts must not cross fork()
        self._setup_task(
            image_size, render_mode, goal_protocol, goal_offset_steps, proprio_limits,
            action_low=np.where(limited, ctrl[:, 0], -1.0),
            action_high=np.where(limited, ctrl[:, 1], 1.0),
            dt=float(self.model.opt.timestep) * int(self.frame_skip),
        )
        self.goal_qpos = self.data.qpos.copy()

    def _setup_task(
        self,
        image_size: int,
        render_mode: str | None,
        goal_protocol: str,
        goal_offset_steps: int,
        proprio_limits: np.ndarray,
        action_low: np.ndarray,
        action_high: np.ndarray,
        dt: float,
    ) -> None:
        """The settings and spaces every task has, whatever simulates it."""
        if not (MIN_IMAGE_SIZE <= int(image_size) <= MAX_IMAGE_SIZE):
            raise ValueError(
                f"image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {image_size}"
            )
        if goal_protocol not in self.goal_protocols:
            raise ValueError(
                f"unknown goal_protocol {goal_protocol!r} (known: {', '.join(self.goal_protocols)})"
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        if int(goal_offset_steps) < 0:
            raise ValueError(f"goal_offset_steps must be non-negative, got {goal_offset_steps}")
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.goal_protocol = goal_protocol
        self.goal_offset_steps = int(goal_offset_steps)
        self.dt = float(dt)
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / self.dt))}
        size = self.image_size
        limits = np.asarray(proprio_limits, np.float32)
        self._proprio_limits = limits
        self.observation_space = spaces.Dict(
            {
                "pixels": spaces.Box(0, 255, (size, size, 3), np.uint8),
                "proprio": spaces.Box(-limits, limits, limits.shape, np.float32),
            }
        )
        low, high = np.asarray(action_low, np.float32), np.asarray(action_high, np.float32)
        self.action_space = spaces.Box(low, high, low.shape, np.float32)
        self.goal_pixels = np.zeros((size, size, 3), np.uint8)

    # ------------------------------------------------------------------ hooks
    def sample_start(self) -> tuple[np.ndarray, np.ndarray | None]:
        """A start state (qpos, qvel or None) drawn with ``self.np_random``."""
        raise NotImplementedError

    def sample_uniform_goal(self, start_qpos: np.ndarray) -> np.ndarray:
        """The ``uniform`` protocol's goal positions, drawn with ``self.np_random``."""
        raise NotImplementedError

    def sample_goal(
        self, protocol: str, start_qpos: np.ndarray, start_qvel: np.ndarray | None
    ) -> np.ndarray:
        """The goal positions of ``protocol`` for this start (override for new protocols)."""
        if protocol == "offset":
            return self._offset_goal(start_qpos, start_qvel)
        if protocol == "uniform":
            return self.sample_uniform_goal(start_qpos)
        raise NotImplementedError(f"{type(self).__name__} does not implement {protocol!r}")

    def proprio(self) -> np.ndarray:
        """The robot's own sensing of the current state (never the goal or the objects)."""
        raise NotImplementedError

    def task_metrics(self) -> dict[str, Any]:
        """``is_success`` and the task's error metrics for the current state vs the goal."""
        raise NotImplementedError

    def make_recording_policy(self, name: str, smoothing: float, scale: float) -> Any:
        """One of ``recording_policies``: ``reset(rng)``, then ``policy(rng)`` -> an action in
        [-1, 1]^A each step (the collector maps it onto the action box)."""
        raise ValueError(f"{type(self).__name__} has no recording policy {name!r}")

    def episode_stats(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        """Per-episode numbers the dataset summary averages (e.g. how often an object moved)."""
        return {}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of ``state_keys`` for the current state (what a dataset records)."""
        return dict(zip(("qpos", "qvel"), self.get_state(), strict=True))

    def oracle_cost(self, qpos: np.ndarray, goal_qpos: np.ndarray) -> np.ndarray:
        """Non-negative per-component errors [..., k] of simulator positions [..., nq] against
        the goal positions: what the simulator oracle minimises (an evaluation-only baseline)."""
        raise NotImplementedError(f"{type(self).__name__} has no oracle cost")

    def offset_action(self) -> np.ndarray:
        """One action of the ``offset`` protocol's goal rollout (uniform in the action box)."""
        return self.np_random.uniform(self.action_space.low, self.action_space.high)

    # ------------------------------------------------------------------ state
    def set_state(self, qpos: np.ndarray, qvel: np.ndarray | None = None) -> None:
        """Put the simulator in a state (used by resets, goal images and the oracle)."""
        self.data.qpos[:] = _as_vector(qpos, self.model.nq, "qpos")
        self.data.qvel[:] = 0.0 if qvel is None else _as_vector(qvel, self.model.nv, "qvel")
        self.data.ctrl[:] = 0.0
        if self.model.na:
            self.data.act[:] = 0.0
        self._mujoco.mj_forward(self.model, self.data)

    def state_sizes(self) -> tuple[int, int]:
        """Lengths of the position and velocity vectors that ``set_state`` takes."""
        return int(self.model.nq), int(self.model.nv)

    def get_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Simulator positions and velocities, copies."""
        return self.data.qpos.copy(), self.data.qvel.copy()

    @contextlib.contextmanager
    def posed(self, qpos: np.ndarray) -> Iterator[None]:
        """The simulator at ``qpos`` (at rest) inside the block, the current state after it."""
        saved = self.get_state()
        self.set_state(qpos)
        try:
            yield
        finally:
            self.set_state(*saved)

    def body_position(self, body: int, qpos: np.ndarray | None = None) -> np.ndarray:
        """Planar position of ``body`` now, or at ``qpos`` (the current state is kept)."""
        if qpos is None:
            return self.data.xpos[body, :2].copy()
        with self.posed(qpos):
            return self.data.xpos[body, :2].copy()

    def render_state(self, qpos: np.ndarray) -> np.ndarray:
        """Render the scene at ``qpos`` (at rest) without disturbing the current state."""
        with self.posed(qpos):
            return self._render_pixels()

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)} (known: {RESET_OPTIONS})")
        protocol = options.get("goal_protocol") or self.goal_protocol
        if protocol not in self.goal_protocols:
            raise ValueError(
                f"unknown goal_protocol {protocol!r} (known: {', '.join(self.goal_protocols)})"
            )
        self._clear_simulator()
        start, start_qvel = self.sample_start()
        nq, nv = self.state_sizes()
        if options.get("start_qpos") is not None:
            start = _as_vector(options["start_qpos"], nq, "start_qpos")
        if options.get("start_qvel") is not None:
            start_qvel = _as_vector(options["start_qvel"], nv, "start_qvel")

        if options.get("goal_qpos") is not None:
            goal = _as_vector(options["goal_qpos"], nq, "goal_qpos")
        else:
            goal = self.sample_goal(protocol, start, start_qvel)
        self.goal_qpos = np.array(goal, np.float64)
        self.goal_pixels = self.render_state(self.goal_qpos)
        self.on_goal_set()

        self.set_state(start, start_qvel)
        info = self._info()
        info["goal_pixels"] = self.goal_pixels.copy()
        info["goal_qpos"] = self.goal_qpos.copy()
        return self._observation(), info

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains NaN or inf")
        self._simulate(action)
        info = self._info()
        return self._observation(), self.reward(info), False, False, info

    def reward(self, info: dict[str, Any]) -> float:
        """Minus the headline error metric (for RL users; planners ignore it)."""
        return -float(info[self.metric_names[0]])

    def on_goal_set(self) -> None:
        """Called after a new goal is fixed (e.g. to cache goal geometry)."""

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self._render_pixels()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ internals
    def _clear_simulator(self) -> None:
        """No solver warm start or other leftovers from the previous episode."""
        self._mujoco.mj_resetData(self.model, self.data)

    def _simulate(self, action: np.ndarray) -> None:
        self.data.ctrl[:] = np.clip(action, self._ctrl_low, self._ctrl_high)
        self._mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        # mj_step leaves body poses at the start of its last substep; recompute them so that
        # pixels and metrics show the state in qpos, exactly as the goal image does.
        self._mujoco.mj_kinematics(self.model, self.data)

    def _offset_goal(self, start: np.ndarray, start_qvel: np.ndarray | None) -> np.ndarray:
        """Goal = where ``goal_offset_steps`` offset actions take the system from the start."""
        self.set_state(start, start_qvel)
        for _ in range(self.goal_offset_steps):
            self._simulate(self.offset_action())
        return self.get_state()[0]

    def _render_pixels(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer = make_renderer(self.model, self.image_size, self.image_size)
        self._renderer.update_scene(self.data, camera=self.camera)
        return self._renderer.render().copy()

    def _observation(self) -> dict[str, np.ndarray]:
        limits = self._proprio_limits
        proprio = np.clip(np.asarray(self.proprio(), np.float32), -limits, limits)
        return {"pixels": self._render_pixels(), "proprio": proprio}

    def _info(self) -> dict[str, Any]:
        info = self.task_metrics()
        info["qpos"], info["qvel"] = self.get_state()
        return info


def free_camera(mujoco: Any, config: dict[str, Any]) -> Any:
    """A ``mujoco.MjvCamera`` from Gymnasium's ``default_camera_config`` keys
    (lookat, distance, azimuth, elevation)."""
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    unknown = set(config) - {"lookat", "distance", "azimuth", "elevation", "trackbodyid", "type"}
    if unknown:
        raise ValueError(f"unknown camera settings {sorted(unknown)}")
    for key in ("distance", "azimuth", "elevation"):
        if key in config:
            setattr(camera, key, float(config[key]))
    if "lookat" in config:
        camera.lookat[:] = np.asarray(config["lookat"], np.float64)
    return camera


def _as_vector(value: Any, size: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (size,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be {size} finite values, got {array!r}")
    return array
