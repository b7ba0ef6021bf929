"""Gymnasium's own MuJoCo environments as goal-image tasks.

:class:`GymnasiumTask` wraps any ``gymnasium.envs.mujoco.MujocoEnv`` (it needs the env's
``model`` / ``data``, a ``frame_skip`` and a settable state): the simulation is the
Gymnasium env's own, stepped as Gymnasium steps it (``frame_skip`` physics steps per action),
but observations are a fixed camera's pixels plus the robot's proprioception, goals are images
rendered by putting the simulator in the goal state, geoms that would give the goal away (a
target marker) are hidden, and success is judged from the state. Its reward and observation
vector are not used: Gymnasium's observations contain the target, which a goal-image planner
must not see.

Subclass it for a new env: name the Gymnasium id, the camera (Gymnasium v5's
``default_camera_config`` keys), the hidden geoms, and implement ``proprio`` and
``task_metrics`` (and ``sample_uniform_goal`` for the ``uniform`` protocol); then
``envs.register_task("my-task", "my_module:MyTask")``. Two are provided:

- ``gym:Reacher-v5`` (:class:`ReacherTask`): the torque-driven two-link arm; success when both
  joints are within 0.05 rad of the goal, angles wrapped.
- ``gym:Pusher-v5`` (:class:`PusherTask`): the 7-DoF arm pushing a cylinder; the goal image
  shows the cylinder at Gymnasium's goal position and the arm at its home pose; success when
  the cylinder's centre is within 0.05 m of the goal position.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs._gl import import_mujoco
from envs.task import (
    GoalImageTask,
    free_camera,
    hinge_error,
    joint_error,
    joint_sincos,
    two_link_metrics,
)

__all__ = ["GymnasiumTask", "PusherTask", "ReacherTask", "UnsupportedEnvError"]


class UnsupportedEnvError(ValueError):
    """A Gymnasium env that the adapter cannot turn into a goal-image task."""


class GymnasiumTask(GoalImageTask):
    """A goal-image task on the simulation of a Gymnasium MuJoCo env (see the module doc)."""

    gym_id: ClassVar[str] = ""
    camera_config: ClassVar[dict[str, Any]] = {}
    hidden_bodies: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        image_size: int = 64,
        render_mode: str | None = "rgb_array",
        goal_protocol: str | None = None,
        goal_offset_steps: int = 25,
        frame_skip: int | None = None,
        gym_kwargs: dict[str, Any] | None = None,
    ) -> None:
        mujoco = import_mujoco()  # the headless GL default must precede Gymnasium's import
        kwargs = dict(gym_kwargs or {})
        if frame_skip is not None:
            kwargs["frame_skip"] = int(frame_skip)
        self.inner = make_mujoco_env(self.gym_id, image_size, self.camera_config, kwargs)
        self.model, self.data = self.inner.model, self.inner.data
        self.frame_skip = int(self.inner.frame_skip)
        self.camera = free_camera(mujoco, self.camera_config)
        hidden = []
        for name in self.hidden_bodies:
            body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, name)
            if body < 0:
                raise UnsupportedEnvError(f"{self.gym_id} has no body named {name!r} to hide")
            hidden.extend(np.flatnonzero(self.model.geom_bodyid == body).tolist())
        self.init_qpos = self.inner.init_qpos.copy()
        self.init_qvel = self.inner.init_qvel.copy()
        protocol = goal_protocol or self.goal_protocols[0]
        self._setup(
            image_size, render_mode, protocol, goal_offset_steps, self.proprio_limits(), hidden
        )

    def proprio_limits(self) -> np.ndarray:
        """Symmetric bounds of ``proprio()`` for the observation space."""
        raise NotImplementedError

    def sample_start(self) -> tuple[np.ndarray, np.ndarray]:
        """Gymnasium's own start distribution (its ``reset_model``), drawn with our generator."""
        self.inner._np_random = self.np_random
        self.inner.reset_model()
        return self.data.qpos.copy(), self.data.qvel.copy()

    def close(self) -> None:
        super().close()
        self.inner.close()


def make_mujoco_env(
    gym_id: str, image_size: int, camera: dict[str, Any], kwargs: dict[str, Any]
) -> Any:
    """``gymnasium.make`` of a MuJoCo env with our camera, or one line saying why not."""
    from gymnasium.envs.mujoco import MujocoEnv
    from gymnasium.envs.registration import load_env_creator

    if gym_id not in gym.registry:
        raise UnsupportedEnvError(f"Gymnasium has no env {gym_id!r}")
    entry = gym.registry[gym_id].entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    if isinstance(creator, type) and not issubclass(creator, MujocoEnv):
        raise UnsupportedEnvError(
            f"{gym_id} is not a Gymnasium MujocoEnv (it is {creator.__name__}); the adapter "
            "needs its MuJoCo model, data and frame_skip"
        )
    try:
        env = gym.make(
            gym_id,
            width=image_size,
            height=image_size,
            default_camera_config=camera,
            disable_env_checker=True,
            **kwargs,
        ).unwrapped
    except TypeError:
        raise UnsupportedEnvError(
            f"{gym_id} does not take width / height / default_camera_config: the adapter "
            "needs a Gymnasium v5 MuJoCo env"
        ) from None
    if not isinstance(env, MujocoEnv):
        env.close()
        raise UnsupportedEnvError(
            f"{gym_id} is not a Gymnasium MujocoEnv (got {type(env).__name__}); the adapter "
            "needs its MuJoCo model, data and frame_skip"
        )
    return env


# ---------------------------------------------------------------------------- Reacher-v5
REACHER_ELBOW_LIMIT = 3.0  # rad, the joint range of Gymnasium's reacher.xml
REACHER_MAX_SPEED = 200.0  # rad/s; full torque for a whole episode stays below it


class ReacherTask(GymnasiumTask):
    """Gymnasium's torque-driven Reacher-v5 from pixels, the target ball hidden.

    Starts: joint angles uniform over the workspace at rest (as DMC's reacher; Gymnasium's own
    start stays within 0.1 rad of one pose, which covers too little of the workspace for a
    world model's data). Proprio: cos and sin of both joints, then their velocities (Reacher's
    own encoding, without the target). Success: both joints within ``success_threshold`` rad
    of the goal, angles wrapped.
    """

    gym_id = "Reacher-v5"
    # Top-down, framing the arm's reach (0.22 m) with a little margin.
    camera_config = {"lookat": [0.0, 0.0, 0.0], "distance": 0.6, "azimuth": 90.0,
                     "elevation": -90.0}
    hidden_bodies = ("target",)
    metric_names = ("joint_error", "fingertip_distance")
    metric_units = {"joint_error": "rad", "fingertip_distance": "m"}
    state_keys = ("qpos", "qvel", "joint_sincos", "fingertip")
    probe_targets = ("joint_sincos", "fingertip")

    def __init__(self, *args: Any, success_threshold: float = 0.05, **kwargs: Any) -> None:
        self.success_threshold = float(success_threshold)
        super().__init__(*args, **kwargs)
        self._tip = self.model.body("fingertip").id
        self._goal_tip = np.zeros(2)

    def proprio_limits(self) -> np.ndarray:
        return np.array([1, 1, 1, 1, REACHER_MAX_SPEED, REACHER_MAX_SPEED], np.float32)

    def _configuration(self) -> np.ndarray:
        qpos = self.init_qpos.copy()  # the hidden target keeps its initial slide positions
        qpos[0] = self.np_random.uniform(-np.pi, np.pi)
        qpos[1] = self.np_random.uniform(-REACHER_ELBOW_LIMIT, REACHER_ELBOW_LIMIT)
        return qpos

    def sample_start(self) -> tuple[np.ndarray, np.ndarray]:
        return self._configuration(), np.zeros(self.model.nv)

    def sample_uniform_goal(self, start_qpos: np.ndarray) -> np.ndarray:
        return self._configuration()

    def proprio(self) -> np.ndarray:
        qpos, qvel = self.data.qpos[:2], self.data.qvel[:2]
        return np.concatenate([np.cos(qpos), np.sin(qpos), qvel])

    def on_goal_set(self) -> None:
        self._goal_tip = self.body_position(self._tip, self.goal_qpos)

    def task_metrics(self) -> dict[str, Any]:
        tip = self.data.xpos[self._tip, :2]
        return two_link_metrics(
            self.data.qpos[:2], self.goal_qpos[:2], tip, self._goal_tip, self.success_threshold
        )

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {
            **super().state_arrays(),
            "joint_sincos": joint_sincos(self.data.qpos[:2]),
            "fingertip": self.data.xpos[self._tip, :2].copy(),
        }

    def oracle_cost(self, qpos: np.ndarray, goal_qpos: np.ndarray) -> np.ndarray:
        return hinge_error(qpos[..., :2], goal_qpos[..., :2], np.array([True, False]))


# ---------------------------------------------------------------------------- Pusher-v5
PUSHER_ARM_JOINTS = 7
PUSHER_TOLERANCE = 0.05  # m: the cylinder's radius (see PusherTask)
PUSHER_GOAL = np.zeros(2)  # Gymnasium's Pusher-v5 goal_pos
OBJECT_MOVED = 0.01  # m: a recorded episode in which the cylinder moved farther than this


class PusherTask(GymnasiumTask):
    """Gymnasium's Pusher-v5 from pixels: push the white cylinder to the goal, marker hidden.

    Protocol ``gym`` (the only one): Gymnasium's own start (arm at its home pose, the cylinder
    uniform in its start region, at least 0.17 m from the goal) and Gymnasium's goal position;
    the goal image shows the cylinder there and the arm at the home pose. Random motions
    rarely touch the cylinder, so an ``offset`` goal would almost always be met from the start.
    Proprio: the 7 arm joint angles and velocities (never the cylinder). Success: the
    cylinder's centre within 0.05 m of the goal, i.e. within one cylinder radius (0.05 m in
    pusher_v5.xml): the cylinder then overlaps the goal disc (radius 0.08 m) by more than half
    of its footprint, and the start is at least 0.17 m away, so a success needs a real push.
    """

    gym_id = "Pusher-v5"
    goal_protocols = ("gym",)
    # Top-down over the table: the arm at its home pose, the cylinder's start region, the goal.
    camera_config = {"lookat": [0.5, -0.3, -0.325], "distance": 1.1, "azimuth": 90.0,
                     "elevation": -90.0}
    hidden_bodies = ("goal",)
    metric_names = ("object_distance", "arm_joint_error")
    metric_units = {"object_distance": "m", "arm_joint_error": "rad"}
    state_keys = ("qpos", "qvel", "object", "fingertip")
    probe_targets = ("object", "fingertip")
    recording_policies = ("push",)  # envs/pusher_recording.py: pushes through the cylinder

    def __init__(self, *args: Any, success_threshold: float = PUSHER_TOLERANCE, **kw: Any):
        self.success_threshold = float(success_threshold)
        super().__init__(*args, **kw)
        self._object = self.model.body("object").id
        self._tip = self.model.body("tips_arm").id
        self._goal_object = np.zeros(2)

    def proprio_limits(self) -> np.ndarray:
        return np.array([4.0] * PUSHER_ARM_JOINTS + [100.0] * PUSHER_ARM_JOINTS, np.float32)

    def sample_goal(
        self, protocol: str, start_qpos: np.ndarray, start_qvel: np.ndarray | None
    ) -> np.ndarray:
        if protocol != "gym":
            return super().sample_goal(protocol, start_qpos, start_qvel)
        goal = np.array(start_qpos, np.float64)
        goal[:PUSHER_ARM_JOINTS] = self.init_qpos[:PUSHER_ARM_JOINTS]
        goal[-4:-2] = PUSHER_GOAL  # the cylinder's slide offsets at Gymnasium's goal position
        goal[-2:] = PUSHER_GOAL  # the (hidden) goal marker there too, as Gymnasium puts it
        return goal

    def proprio(self) -> np.ndarray:
        n = PUSHER_ARM_JOINTS
        return np.concatenate([self.data.qpos[:n], self.data.qvel[:n]])

    def on_goal_set(self) -> None:
        self._goal_object = self.body_position(self._object, self.goal_qpos)

    def task_metrics(self) -> dict[str, Any]:
        n = PUSHER_ARM_JOINTS
        distance = float(np.linalg.norm(self.data.xpos[self._object, :2] - self._goal_object))
        arm = joint_error(self.data.qpos[:n], self.goal_qpos[:n])
        return {
            "object_distance": distance,
            "arm_joint_error": float(arm.max()),
            "is_success": distance <= self.success_threshold,
        }

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {
            **super().state_arrays(),
            "object": self.data.xpos[self._object, :2].copy(),
            "fingertip": self.data.xpos[self._tip, :3].copy(),
        }

    def make_recording_policy(self, name: str, smoothing: float, scale: float) -> Any:
        if name != "push":
            return super().make_recording_policy(name, smoothing, scale)
        from envs.pusher_recording import PusherContactPolicy

        return PusherContactPolicy(self, smoothing, scale)

    def episode_stats(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        """Whether the cylinder moved (more than 1 cm from where it started) and how far."""
        shift = np.linalg.norm(arrays["object"] - arrays["object"][0], axis=-1).max()
        return {"object_moved": float(shift > OBJECT_MOVED), "object_shift_max": float(shift)}

    def oracle_cost(self, qpos: np.ndarray, goal_qpos: np.ndarray) -> np.ndarray:
        """The cylinder's planar offset from its goal position (slide joints are offsets)."""
        return np.abs(qpos[..., -4:-2] - goal_qpos[..., -4:-2])
