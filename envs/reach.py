"""Reach: a planar two-link arm that must match a goal image, observed from pixels.

The arm's geometry follows Gymnasium's Reacher (two 0.1 m links) but the joints are strongly
damped, so an action behaves like a joint-velocity command and the arm stays where it is left.
A fixed top-down camera frames the whole workspace. Goals are images of the arm at a goal
configuration (no target marker is drawn), handed to the caller together with the goal joint
angles, which are meant for evaluation only.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs._gl import import_mujoco, make_renderer

GOAL_PROTOCOLS = ("offset", "uniform")
ELBOW_LIMIT = 2.8  # rad, matches the joint range in assets/reach.xml
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 224
MAX_JOINT_SPEED = 100.0  # rad/s; the damped arm tops out near 5 rad/s
# proprio = [cos q1, cos q2, sin q1, sin q2, qd1, qd2] (Gymnasium Reacher's angle encoding)
PROPRIO_LIMITS = np.array([1, 1, 1, 1, MAX_JOINT_SPEED, MAX_JOINT_SPEED], np.float32)
PROPRIO_DIM = len(PROPRIO_LIMITS)


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Wrap angles to (-pi, pi]; joint errors must not count full turns."""
    angle = np.asarray(angle, dtype=np.float64)
    return np.pi - np.mod(np.pi - angle, 2.0 * np.pi)


def joint_error(qpos: np.ndarray, goal_qpos: np.ndarray) -> np.ndarray:
    """Per-joint absolute error with wrapping (the peers' qpos_match check forgets the wrap)."""
    return np.abs(wrap_angle(np.asarray(qpos) - np.asarray(goal_qpos)))


class ReachEnv(gym.Env):
    """Two-link planar arm with pixel + proprioceptive observations and image goals.

    Observation: ``{"pixels": uint8 [S,S,3], "proprio": float32 [6]}`` where proprio holds the
    cosines and sines of the joint angles, then the joint velocities. Angles enter as (cos, sin)
    because the shoulder turns without limit: a wrapped angle jumps at +-pi, and a world model
    that reads it must learn that jump (an MLP from wrapped angles to the encoder's latents
    reaches 1.4x the error of one fed (cos, sin) after the same training). Action: joint commands in [-1,1]^2.
    Reward: minus the fingertip distance to the goal (for RL users; planners ignore it).

    ``reset(options=...)`` accepts ``start_qpos``, ``start_qvel``, ``goal_qpos`` and
    ``goal_protocol`` ("offset": the state after ``goal_offset_steps`` random actions from the
    start; "uniform": any reachable configuration).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        image_size: int = 64,
        render_mode: str | None = "rgb_array",
        goal_protocol: str = "offset",
        goal_offset_steps: int = 25,
        frame_skip: int = 2,
        success_threshold: float = 0.05,
    ) -> None:
        if not (MIN_IMAGE_SIZE <= int(image_size) <= MAX_IMAGE_SIZE):
            raise ValueError(
                f"image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {image_size}"
            )
        if goal_protocol not in GOAL_PROTOCOLS:
            raise ValueError(f"unknown goal_protocol {goal_protocol!r} (known: {GOAL_PROTOCOLS})")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.goal_protocol = goal_protocol
        self.goal_offset_steps = int(goal_offset_steps)
        self.frame_skip = int(frame_skip)
        self.success_threshold = float(success_threshold)

        self._mujoco = import_mujoco()
        xml = resources.files("envs").joinpath("assets/reach.xml").read_text()
        self.model = self._mujoco.MjModel.from_xml_string(xml)
        self.data = self._mujoco.MjData(self.model)
        self._camera = "top"
        self._renderer = None  # created lazily: GL contexts must not cross fork()
        self._fingertip = self.model.body("fingertip").id
        self.dt = self.model.opt.timestep * self.frame_skip

        size = self.image_size
        self.observation_space = spaces.Dict(
            {
                "pixels": spaces.Box(0, 255, (size, size, 3), np.uint8),
                "proprio": spaces.Box(-PROPRIO_LIMITS, PROPRIO_LIMITS, (PROPRIO_DIM,), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.goal_qpos = np.zeros(2)
        self.goal_pixels = np.zeros((size, size, 3), np.uint8)
        self._goal_tip = np.zeros(2)

    # ------------------------------------------------------------------ state helpers
    def set_state(self, qpos: np.ndarray, qvel: np.ndarray | None = None) -> None:
        """Put the simulator in a joint state (used by resets and the oracle planner)."""
        self.data.qpos[:] = np.asarray(qpos, dtype=np.float64).reshape(2)
        self.data.qvel[:] = 0.0 if qvel is None else np.asarray(qvel, np.float64).reshape(2)
        self.data.ctrl[:] = 0.0
        self._mujoco.mj_forward(self.model, self.data)

    def get_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions (unwrapped) and velocities, copies."""
        return self.data.qpos.copy(), self.data.qvel.copy()

    def sample_configuration(self) -> np.ndarray:
        """A uniformly random reachable joint configuration."""
        return np.array(
            [
                self.np_random.uniform(-np.pi, np.pi),
                self.np_random.uniform(-ELBOW_LIMIT, ELBOW_LIMIT),
            ]
        )

    def render_configuration(self, qpos: np.ndarray) -> np.ndarray:
        """Render the arm at ``qpos`` without disturbing the current simulation state."""
        saved = self.get_state()
        self.set_state(qpos)
        image = self._render_pixels()
        self.set_state(*saved)
        return image

    def fingertip_position(self, qpos: np.ndarray | None = None) -> np.ndarray:
        """Planar fingertip position (m) for ``qpos`` or the current state."""
        if qpos is None:
            return self.data.xpos[self._fingertip, :2].copy()
        saved = self.get_state()
        self.set_state(qpos)
        tip = self.data.xpos[self._fingertip, :2].copy()
        self.set_state(*saved)
        return tip

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"start_qpos", "start_qvel", "goal_qpos", "goal_protocol"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}")
        protocol = options.get("goal_protocol", self.goal_protocol)
        if protocol not in GOAL_PROTOCOLS:
            raise ValueError(f"unknown goal_protocol {protocol!r} (known: {GOAL_PROTOCOLS})")

        start = options.get("start_qpos")
        start = self.sample_configuration() if start is None else _as_qpos(start, "start_qpos")
        start_qvel = options.get("start_qvel")
        start_qvel = None if start_qvel is None else _as_qpos(start_qvel, "start_qvel")

        goal = options.get("goal_qpos")
        if goal is not None:
            goal = _as_qpos(goal, "goal_qpos")
        elif protocol == "uniform":
            goal = self.sample_configuration()
        else:
            goal = self._offset_goal(start)
        self.goal_qpos = goal
        self._goal_tip = self.fingertip_position(goal)
        self.goal_pixels = self.render_configuration(goal)

        self.set_state(start, start_qvel)
        info = self._metrics()
        info["goal_pixels"] = self.goal_pixels.copy()
        info["goal_qpos"] = self.goal_qpos.copy()
        return self._observation(), info

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"action must have shape (2,), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action contains NaN or inf")
        self.data.ctrl[:] = np.clip(action, -1.0, 1.0)
        self._mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        # mj_step leaves body poses at the start of its last substep; recompute them so that
        # pixels and metrics show the state in qpos, exactly as the goal image does.
        self._mujoco.mj_kinematics(self.model, self.data)
        info = self._metrics()
        reward = -float(info["fingertip_distance"])
        return self._observation(), reward, False, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self._render_pixels()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ internals
    def _offset_goal(self, start: np.ndarray) -> np.ndarray:
        """Goal = where ``goal_offset_steps`` uniform random actions take the arm from start."""
        self.set_state(start)
        for _ in range(self.goal_offset_steps):
            self.data.ctrl[:] = self.np_random.uniform(-1.0, 1.0, size=2)
            self._mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        return self.data.qpos.copy()

    def _render_pixels(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer = make_renderer(self.model, self.image_size, self.image_size)
        self._renderer.update_scene(self.data, camera=self._camera)
        return self._renderer.render().copy()

    def _observation(self) -> dict[str, np.ndarray]:
        qpos, qvel = self.data.qpos, self.data.qvel
        proprio = np.concatenate([np.cos(qpos), np.sin(qpos), qvel]).astype(np.float32)
        proprio = np.clip(proprio, -PROPRIO_LIMITS, PROPRIO_LIMITS)
        return {"pixels": self._render_pixels(), "proprio": proprio}

    def _metrics(self) -> dict[str, Any]:
        errors = joint_error(self.data.qpos, self.goal_qpos)
        tip = self.data.xpos[self._fingertip, :2]
        return {
            "joint_error": float(errors.max()),
            "joint_errors": errors.astype(np.float32),
            "fingertip_distance": float(np.linalg.norm(tip - self._goal_tip)),
            "is_success": bool(np.all(errors <= self.success_threshold)),
            "qpos": self.data.qpos.copy(),
            "qvel": self.data.qvel.copy(),
        }


def _as_qpos(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (2,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be 2 finite joint values, got {array!r}")
    return array
