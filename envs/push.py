"""Push-T in MuJoCo: a round pusher slides a T-shaped block into the pose of a goal image.

The block's pose is in no sensor: proprioception is the pusher's position and velocity, so
only the pixels say where the T is. Geometry follows Push-T at 1 mm per Push-T unit (see
assets/push.xml); success follows Push-T's rule: the T's centre within 1/6 of its bar length
(0.02 m) of the goal and its angle within pi/9, judged on the block alone.

Actions are velocity commands in [-1, 1]^2 (1 = 0.5 m/s, one env step = 0.05 s, so at most
2.5 cm per step). A velocity command, unlike Push-T's target position, makes zero mean "stay",
lets an action block of several steps compose, and matches the damped-joint reach task, so a
planner's sampling distribution centred on zero is a sensible prior on every task.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.task import GoalImageTask, wrap_angle

BAR_LENGTH = 0.12  # m, Push-T's 120 units
POSITION_TOLERANCE = BAR_LENGTH / 6.0  # 0.02 m: Push-T's 20 units
ANGLE_TOLERANCE = np.pi / 9.0
PUSHER_RADIUS = 0.015
ARENA = 0.18  # m: the walls' inner faces are at +-ARENA
BLOCK_RANGE = 0.09  # m: start / uniform-goal centres in +-BLOCK_RANGE (the T stays clear of walls)
CLEARANCE = 0.005  # m: a drawn pusher at least this far from the T and the walls
MAX_SPEED = 0.5  # m/s at |action| = 1 (actuator gear in push.xml)
# offset goals: the block must move at least MIN_SHIFT or turn at least MIN_TURN, i.e. more
# than the success tolerances, so that a start never already meets its goal
MIN_SHIFT, MIN_TURN = 1.5 * POSITION_TOLERANCE, 1.5 * ANGLE_TOLERANCE
OFFSET_ATTEMPTS = 50
MOVED = 0.005  # m or rad: a recorded episode in which the block moved or turned more than this

# The T in its body frame (origin at the centre of mass), counter-clockwise: an edge a -> b has
# the outward normal (b - a) rotated by -90 degrees.
T_OUTLINE = np.array(
    [
        [0.06, 0.040714], [-0.06, 0.040714], [-0.06, 0.010714], [-0.015, 0.010714],
        [-0.015, -0.079286], [0.015, -0.079286], [0.015, 0.010714], [0.06, 0.010714],
    ]
)
# the two boxes of the T as (centre, half sizes), as in push.xml
T_BOXES = ((np.array([0.0, 0.025714]), np.array([0.06, 0.015])),
           (np.array([0.0, -0.034286]), np.array([0.015, 0.045])))

# proprio = [pusher x, y (m), pusher vx, vy (m/s)]
PROPRIO_LIMITS = np.array([ARENA, ARENA, 5.0, 5.0], np.float32)


def rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def distance_to_t(point: np.ndarray, block_pose: np.ndarray) -> float:
    """Distance from a planar point to the T at pose (x, y, angle); 0 inside it."""
    local = rotation(float(block_pose[2])).T @ (np.asarray(point) - block_pose[:2])
    return min(
        float(np.linalg.norm(np.maximum(np.abs(local - centre) - half, 0.0)))
        for centre, half in T_BOXES
    )


def pose_errors(block_pose: np.ndarray, goal_pose: np.ndarray) -> tuple[float, float]:
    """Position (m) and wrapped angle (rad) errors of the T; it has no rotational symmetry,
    so the angle error is the plain wrapped difference."""
    position = float(np.linalg.norm(np.asarray(block_pose[:2]) - goal_pose[:2]))
    angle = float(abs(wrap_angle(float(block_pose[2]) - float(goal_pose[2]))))
    return position, angle


def is_success(position_error: float, angle_error: float) -> bool:
    return position_error <= POSITION_TOLERANCE and angle_error <= ANGLE_TOLERANCE


class PushEnv(GoalImageTask):
    """Push-T with pixel + proprioceptive observations and image goals.

    Observation: ``{"pixels": uint8 [S,S,3], "proprio": float32 [4]}`` (the pusher's position
    and velocity). Simulator positions: ``[block x, block y, block angle, pusher x, pusher y]``.
    ``info`` carries ``block_position_error`` (m), ``block_angle_error`` (rad, wrapped) and
    ``pusher_distance`` (m, to where the goal state has the pusher). Goal protocols: ``offset``
    (the state 25 steps of the ``push`` recording policy reach, kept only if the block moved
    by at least 3 cm or turned by at least 30 degrees) and ``uniform`` (the block anywhere in
    the workspace at any angle, the pusher anywhere clear of it). Reward: minus the sum of the
    block's errors, each in units of its tolerance.
    """

    metric_names = ("block_position_error", "block_angle_error", "pusher_distance")
    metric_units = {"block_position_error": "m", "block_angle_error": "rad", "pusher_distance": "m"}
    state_keys = ("qpos", "qvel", "block", "block_sincos", "pusher")
    probe_targets = ("block", "block_sincos")
    recording_policies = ("push",)  # envs/push_recording.py: heads for the T and pushes it

    def __init__(
        self,
        image_size: int = 64,
        render_mode: str | None = "rgb_array",
        goal_protocol: str = "offset",
        goal_offset_steps: int = 25,
        frame_skip: int = 5,
    ) -> None:
        self._load_asset("push.xml", frame_skip, camera="top")
        self._goal_pose = np.zeros(3)
        self._setup(image_size, render_mode, goal_protocol, goal_offset_steps, PROPRIO_LIMITS)

    # ------------------------------------------------------------------ state layout
    @staticmethod
    def block_pose(qpos: np.ndarray) -> np.ndarray:
        return np.asarray(qpos, np.float64)[..., :3]

    @staticmethod
    def pusher_position(qpos: np.ndarray) -> np.ndarray:
        return np.asarray(qpos, np.float64)[..., 3:5]

    # ------------------------------------------------------------------ task hooks
    def sample_block_pose(self) -> np.ndarray:
        rng = self.np_random
        return np.array([*rng.uniform(-BLOCK_RANGE, BLOCK_RANGE, 2), rng.uniform(-np.pi, np.pi)])

    def sample_pusher(self, block_pose: np.ndarray) -> np.ndarray:
        """A pusher position inside the walls and clear of the T."""
        limit = ARENA - PUSHER_RADIUS - CLEARANCE
        while True:
            point = self.np_random.uniform(-limit, limit, 2)
            if distance_to_t(point, block_pose) > PUSHER_RADIUS + CLEARANCE:
                return point

    def sample_state(self) -> np.ndarray:
        block = self.sample_block_pose()
        return np.concatenate([block, self.sample_pusher(block)])

    def sample_start(self) -> tuple[np.ndarray, None]:
        return self.sample_state(), None

    def sample_uniform_goal(self, start_qpos: np.ndarray) -> np.ndarray:
        return self.sample_state()

    def sample_goal(
        self, protocol: str, start_qpos: np.ndarray, start_qvel: np.ndarray | None
    ) -> np.ndarray:
        if protocol != "offset":
            return super().sample_goal(protocol, start_qpos, start_qvel)
        from envs.push_recording import PushContactPolicy

        policy = PushContactPolicy(self)
        start_pose = self.block_pose(start_qpos)
        for _ in range(OFFSET_ATTEMPTS):
            self.set_state(start_qpos, start_qvel)
            policy.reset(self.np_random)
            for _ in range(self.goal_offset_steps):
                self._simulate(policy(self.np_random))
            shift, turn = pose_errors(self.block_pose(self.data.qpos), start_pose)
            if shift >= MIN_SHIFT or turn >= MIN_TURN or self.goal_offset_steps == 0:
                return self.data.qpos.copy()
        raise RuntimeError(
            f"no offset goal moved the block after {OFFSET_ATTEMPTS} rollouts of the push policy"
        )

    def proprio(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[3:5], self.data.qvel[3:5]])

    def on_goal_set(self) -> None:
        self._goal_pose = self.block_pose(self.goal_qpos).copy()

    def task_metrics(self) -> dict[str, Any]:
        position, angle = pose_errors(self.block_pose(self.data.qpos), self._goal_pose)
        pusher = np.linalg.norm(
            self.pusher_position(self.data.qpos) - self.pusher_position(self.goal_qpos)
        )
        return {
            "block_position_error": position,
            "block_angle_error": angle,
            "pusher_distance": float(pusher),
            "is_success": is_success(position, angle),
        }

    def reward(self, info: dict[str, Any]) -> float:
        return -(
            info["block_position_error"] / POSITION_TOLERANCE
            + info["block_angle_error"] / ANGLE_TOLERANCE
        )

    def state_arrays(self) -> dict[str, np.ndarray]:
        angle = float(self.data.qpos[2])
        return {
            **super().state_arrays(),
            "block": self.data.qpos[:2].copy(),
            "block_sincos": np.array([np.sin(angle), np.cos(angle)]),
            "pusher": self.data.qpos[3:5].copy(),
        }

    def make_recording_policy(self, name: str, smoothing: float, scale: float) -> Any:
        if name != "push":
            return super().make_recording_policy(name, smoothing, scale)
        from envs.push_recording import PushContactPolicy

        return PushContactPolicy(self, smoothing, scale)

    def episode_stats(self, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        """Whether the block moved (more than 5 mm or 5 mrad) and how far it went."""
        qpos = arrays["qpos"]
        shift = np.linalg.norm(qpos[:, :2] - qpos[0, :2], axis=-1).max()
        turn = np.abs(wrap_angle(qpos[:, 2] - qpos[0, 2])).max()
        return {
            "block_moved": float(shift > MOVED or turn > MOVED),
            "block_shift_max": float(shift),
            "block_turn_max": float(turn),
        }

    def oracle_cost(self, qpos: np.ndarray, goal_qpos: np.ndarray) -> np.ndarray:
        """The block's position and angle errors in units of their tolerances, plus a small
        term that brings the pusher to the block (the block's errors are flat until contact)."""
        block, goal = self.block_pose(qpos), self.block_pose(goal_qpos)
        position = np.abs(block[..., :2] - goal[..., :2]) / POSITION_TOLERANCE
        angle = np.abs(wrap_angle(block[..., 2] - goal[..., 2])) / ANGLE_TOLERANCE
        reach = np.linalg.norm(self.pusher_position(qpos) - block[..., :2], axis=-1)
        approach = 0.1 * np.maximum(reach - 0.05, 0.0) / POSITION_TOLERANCE
        return np.concatenate([position, angle[..., None], approach[..., None]], axis=-1)
