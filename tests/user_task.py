"""A user's own goal-image task, registered on import (used through JEPA_WORLD_TASKS)."""

from __future__ import annotations

import numpy as np

import envs
from envs.gymnasium_tasks import GymnasiumTask, ReacherTask
from envs.task import joint_error


class SlowReacher(GymnasiumTask):
    """Reacher at a longer frame skip, judged on the shoulder only."""

    gym_id = "Reacher-v5"
    camera_config = ReacherTask.camera_config
    hidden_bodies = ("target",)
    metric_names = ("shoulder_error",)
    metric_units = {"shoulder_error": "rad"}

    def proprio_limits(self) -> np.ndarray:
        return np.full(4, 500.0, np.float32)

    def sample_uniform_goal(self, start_qpos: np.ndarray) -> np.ndarray:
        goal = start_qpos.copy()
        goal[0] = self.np_random.uniform(-np.pi, np.pi)
        return goal

    def proprio(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:2], self.data.qvel[:2]])

    def task_metrics(self) -> dict:
        error = float(joint_error(self.data.qpos[0], self.goal_qpos[0]))
        return {"shoulder_error": error, "is_success": error < 0.1}


envs.register_task("slow-reacher", f"{__name__}:SlowReacher", frame_skip=4)
