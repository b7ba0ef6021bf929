"""Reach: a planar two-link arm that must match a goal image, observed from pixels.

The arm's geometry follows Gymnasium's Reacher (two 0.1 m links) but the joints are strongly
damped, so an action behaves like a joint-velocity command and the arm stays where it is left.
A fixed top-down camera frames the whole workspace. Goals are images of the arm at a goal
configuration (no target marker is drawn).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.task import (
    GoalImageTask,
    hinge_error,
    joint_error,
    joint_sincos,
    two_link_metrics,
    wrap_angle,
)

__all__ = ["ReachEnv", "joint_error", "wrap_angle"]

ELBOW_LIMIT = 2.8  # rad, matches the joint range in assets/reach.xml
MAX_JOINT_SPEED = 100.0  # rad/s; the damped arm tops out near 5 rad/s
# proprio = [cos q1, cos q2, sin q1, sin q2, qd1, qd2] (Gymnasium Reacher's angle encoding)
PROPRIO_LIMITS = np.array([1, 1, 1, 1, MAX_JOINT_SPEED, MAX_JOINT_SPEED], np.float32)
PROPRIO_DIM = len(PROPRIO_LIMITS)


class ReachEnv(GoalImageTask):
    """Two-link planar arm with pixel + proprioceptive observations and image goals.

    Observation: ``{"pixels": uint8 [S,S,3], "proprio": float32 [6]}`` where proprio holds the
    cosines and sines of the joint angles, then the joint velocities. Angles enter as (cos, sin)
    because the shoulder turns without limit: a wrapped angle jumps at +-pi, which a world
    model that reads it would have to learn. Action: joint commands in [-1,1]^2. Success: every
    joint within ``success_threshold`` rad of the goal, wrapped. Reward: minus the joint error.
    """

    metric_names = ("joint_error", "fingertip_distance")
    metric_units = {"joint_error": "rad", "fingertip_distance": "m"}
    state_keys = ("qpos", "qvel", "joint_sincos", "fingertip")
    probe_targets = ("joint_sincos", "fingertip")

    def __init__(
        self,
        image_size: int = 64,
        render_mode: str | None = "rgb_array",
        goal_protocol: str = "offset",
        goal_offset_steps: int = 25,
        frame_skip: int = 2,
        success_threshold: float = 0.05,
    ) -> None:
        self._load_asset("reach.xml", frame_skip, camera="top")
        self.success_threshold = float(success_threshold)
        self._fingertip = self.model.body("fingertip").id
        self._goal_tip = np.zeros(2)
        self._setup(image_size, render_mode, goal_protocol, goal_offset_steps, PROPRIO_LIMITS)

    # ------------------------------------------------------------------ task hooks
    def sample_configuration(self) -> np.ndarray:
        """A uniformly random reachable joint configuration."""
        return np.array(
            [
                self.np_random.uniform(-np.pi, np.pi),
                self.np_random.uniform(-ELBOW_LIMIT, ELBOW_LIMIT),
            ]
        )

    def sample_start(self) -> tuple[np.ndarray, None]:
        return self.sample_configuration(), None

    def sample_uniform_goal(self, start_qpos: np.ndarray) -> np.ndarray:
        return self.sample_configuration()

    def proprio(self) -> np.ndarray:
        qpos, qvel = self.data.qpos, self.data.qvel
        return np.concatenate([np.cos(qpos), np.sin(qpos), qvel])

    def on_goal_set(self) -> None:
        self._goal_tip = self.fingertip_position(self.goal_qpos)

    def task_metrics(self) -> dict[str, Any]:
        tip = self.data.xpos[self._fingertip, :2]
        return two_link_metrics(
            self.data.qpos, self.goal_qpos, tip, self._goal_tip, self.success_threshold
        )

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {
            **super().state_arrays(),
            "joint_sincos": joint_sincos(self.data.qpos),
            "fingertip": self.data.xpos[self._fingertip, :2].copy(),
        }

    def oracle_cost(self, qpos: np.ndarray, goal_qpos: np.ndarray) -> np.ndarray:
        return hinge_error(qpos, goal_qpos, np.array([True, False]))  # the elbow is limited

    def reward(self, info: dict[str, Any]) -> float:
        return -float(info["fingertip_distance"])

    # ------------------------------------------------------------------ helpers
    def render_configuration(self, qpos: np.ndarray) -> np.ndarray:
        """Render the arm at ``qpos`` without disturbing the current simulation state."""
        return self.render_state(qpos)

    def fingertip_position(self, qpos: np.ndarray | None = None) -> np.ndarray:
        """Planar fingertip position (m) for ``qpos`` or the current state."""
        return self.body_position(self._fingertip, qpos)
