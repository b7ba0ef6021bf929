"""A recording policy for Push-T that touches the T often (``--policy push``).

Random velocity commands rarely reach the block, so a dataset recorded with them shows a
world model almost no pushing. This policy picks a random point on the T's outline, heads for
a spot just outside it (along the edge's outward normal), pushes through the point for a
random number of steps, and picks a new point; AR(1) noise on the commands keeps the motions
varied. It reads the simulator's state, which is fine for recording data and for drawing
``offset`` goals, and is never used by a planner.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.exploration import ExplorationPolicy
from envs.push import MAX_SPEED, PUSHER_RADIUS, T_OUTLINE, distance_to_t, rotation

STANDOFF = 0.02  # m between the pusher's surface and the outline where a push starts
READY = 0.012  # m: close enough to the start spot to begin pushing
APPROACH_STEPS = 30  # give up an approach after this many steps
PUSH_STEPS = (3, 10)  # a push lasts this many steps (uniform, inclusive)
PUSH_SPEED = 0.3  # command norm while pushing: slow, careful pushes as in demonstrations
DEPTH = (0.02, 0.08)  # m beyond the outline that a push aims for
CIRCLE_RADIUS = 0.1  # m from the T's centre: clear of its outline (at most 0.081 m)
GAIN = 0.8  # fraction of the remaining distance commanded per step
NOISE = 0.4  # weight of the AR(1) noise at scale 1


class PushContactPolicy:
    """Velocity commands in [-1, 1]^2 for :class:`envs.push.PushEnv`."""

    def __init__(self, task: Any, smoothing: float = 0.8, scale: float = 1.0) -> None:
        self.task = task
        self.noise = ExplorationPolicy("noisy", 2, smoothing, 1.0)
        self.scale = float(scale)
        self.step_length = MAX_SPEED * task.dt  # m per step at full command
        edges = np.roll(T_OUTLINE, -1, axis=0) - T_OUTLINE
        self._lengths = np.linalg.norm(edges, axis=1)
        self._normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / self._lengths[:, None]
        self._point, self._normal = np.zeros(2), np.zeros(2)
        self._phase, self._left, self._depth = "approach", 0, 0.0

    def reset(self, rng: np.random.Generator) -> None:
        self.noise.reset(rng)
        self._new_target(rng)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        qpos = self.task.data.qpos
        if self._left <= 0:
            self._new_target(rng)
        turn = rotation(float(qpos[2]))
        point = qpos[:2] + turn @ self._point  # the target follows the block as it moves
        normal = turn @ self._normal
        pusher = qpos[3:5]
        spot = point + normal * (PUSHER_RADIUS + STANDOFF)
        if self._phase == "approach" and np.linalg.norm(pusher - spot) < READY:
            self._phase, self._left = "push", int(rng.integers(PUSH_STEPS[0], PUSH_STEPS[1] + 1))
        if self._phase == "push":
            aim = point - normal * self._depth
        else:
            aim = self._around(pusher, spot, qpos[:3])
        self._left -= 1
        command = GAIN * (aim - pusher) / self.step_length
        limit = 1.0 if self._phase == "approach" else PUSH_SPEED
        command *= limit / max(limit, float(np.linalg.norm(command)))
        action = command + self.scale * NOISE * self.noise(rng)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    @staticmethod
    def _around(pusher: np.ndarray, spot: np.ndarray, block: np.ndarray) -> np.ndarray:
        """The spot, or, when the straight way there runs into the T, a waypoint that circles
        the block towards it (so approaches do not shove the T about)."""
        path = pusher + np.linspace(0.0, 1.0, 12)[:, None] * (spot - pusher)
        if all(distance_to_t(p, block) > PUSHER_RADIUS + 0.003 for p in path[1:-1]):
            return spot
        centre = block[:2]
        away, target = pusher - centre, spot - centre
        side = np.sign(away[0] * target[1] - away[1] * target[0]) or 1.0
        radius = max(float(np.linalg.norm(away)), CIRCLE_RADIUS)
        direction = rotation(side * np.pi / 4) @ (away / max(float(np.linalg.norm(away)), 1e-9))
        return centre + radius * direction

    def _new_target(self, rng: np.random.Generator) -> None:
        edge = int(rng.choice(len(T_OUTLINE), p=self._lengths / self._lengths.sum()))
        along = rng.uniform(0.1, 0.9)
        start, end = T_OUTLINE[edge], T_OUTLINE[(edge + 1) % len(T_OUTLINE)]
        self._point = start + along * (end - start)
        self._normal = self._normals[edge]
        self._depth = float(rng.uniform(*DEPTH))
        self._phase, self._left = "approach", APPROACH_STEPS
