"""A recording policy for Gymnasium's Pusher that touches the cylinder (``--policy push``).

Random torques almost never reach the cylinder, so a dataset recorded with them teaches a
world model nothing about pushing. This policy picks a random push direction, steers the
fingertip behind the cylinder, pushes through it for a while and picks a new direction;
AR(1) noise on the torques keeps the motions varied. It reads the simulator's state, which
is fine for recording data and never used by a planner.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from envs.exploration import ExplorationPolicy

PUSH_Z = -0.26  # height the fingertip aims for: a little above the cylinder's centre (-0.275)
BEHIND = 0.09  # m behind the cylinder's centre where a push starts (radius 0.05 + margin)
THROUGH = 0.10  # m beyond the centre that the push aims for
READY = 0.03  # m: close enough to the start point to begin pushing
APPROACH_STEPS, PUSH_STEPS = 60, 25  # give up an approach / end a push after this many steps
# Jacobian-transpose control, torque = GAIN J^T e - DAMPING qvel + POSTURE (q_home - q), with the
# position error e capped at STEP metres: uncapped errors saturate every torque and the arm
# ends up pressed onto the table; the posture term keeps the redundant arm near its home pose.
GAIN, DAMPING, POSTURE, STEP = 80.0, 0.5, 0.3, 0.1


class PusherContactPolicy:
    """Actions in [-1, 1]^7 (the collector scales them to Pusher's [-2, 2] torques)."""

    def __init__(self, task: Any, smoothing: float = 0.8, scale: float = 1.0) -> None:
        self.task = task
        self.arm = int(task.action_space.shape[0])
        self.torque_limit = float(task.action_space.high[0])
        self.noise = ExplorationPolicy("noisy", self.arm, smoothing, 1.0)
        self.scale = float(scale)  # weight of the noise relative to the controller
        self._tip = task.model.body("tips_arm").id
        self._object = task.model.body("object").id
        self._jacobian = np.zeros((3, task.model.nv))
        self._home = np.array(task.init_qpos[: self.arm], np.float64)
        self._direction = np.zeros(2)
        self._phase, self._left = "approach", 0

    def reset(self, rng: np.random.Generator) -> None:
        self.noise.reset(rng)
        self._new_push(rng)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        data = self.task.data
        cylinder, tip = data.xpos[self._object, :2], data.xpos[self._tip]
        if self._left <= 0:
            self._new_push(rng)
        start = cylinder - BEHIND * self._direction
        if self._phase == "approach" and np.linalg.norm(tip[:2] - start) < READY:
            self._phase, self._left = "push", PUSH_STEPS
        aim = start if self._phase == "approach" else cylinder + THROUGH * self._direction
        self._left -= 1
        error = np.array([aim[0], aim[1], PUSH_Z]) - tip
        error *= min(1.0, STEP / max(float(np.linalg.norm(error)), 1e-9))
        mujoco.mj_jacBody(self.task.model, data, self._jacobian, None, self._tip)
        q, qvel = data.qpos[: self.arm], data.qvel[: self.arm]
        torque = (
            GAIN * self._jacobian[:, : self.arm].T @ error
            - DAMPING * qvel
            + POSTURE * (self._home - q)
        )
        action = torque / self.torque_limit + self.scale * 0.5 * self.noise(rng)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _new_push(self, rng: np.random.Generator) -> None:
        angle = rng.uniform(-np.pi, np.pi)
        self._direction = np.array([np.cos(angle), np.sin(angle)])
        self._phase, self._left = "approach", APPROACH_STEPS
