"""The true simulator behind the world-model protocol: the upper bound for every planner.

The "latent" of a state is the simulator state itself, ``[qpos, qvel]`` as a [B,1,nq+nv]
float64 tensor (one token), ``rollout`` runs MuJoCo with ``mujoco.rollout`` (batched C
rollouts, optionally multi-threaded) from those exact states, and ``distance`` (what the
planners' energy compares states with) is the mean (l1)
or mean square (l2) of the task's ``oracle_cost`` against the goal state (for reachers the
joint-angle errors, for pushers the object's offset). The oracle reads the simulator state and
the goal state, which a fair planner never sees: its numbers bound what a perfect world model
could achieve with the same planner and budget; they are not a result of learning.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor


class OracleModel:
    """Implements ``planners.base.WorldModelProtocol`` with the simulator (CPU only)."""

    def __init__(
        self,
        mj_model: Any,
        env_frame_skip: int,
        cost: Callable[[np.ndarray, np.ndarray], np.ndarray],
        frameskip: int = 5,
        threads: int | str = 0,
    ) -> None:
        from envs._gl import import_mujoco

        mujoco = import_mujoco()  # headless GL default first: the envs render in this process
        from mujoco import rollout

        # A private copy without the stages that cannot matter (contacts when no geom pair can
        # collide, sensors): the same trajectories, faster.
        mj_model = copy.deepcopy(mj_model)
        unused = mujoco.mjtDisableBit
        mj_model.opt.disableflags |= unused.mjDSBL_SENSOR.value
        if not _can_collide(mj_model):
            mj_model.opt.disableflags |= unused.mjDSBL_CONTACT.value
        self.mj_model = mj_model
        self.env_frame_skip = int(env_frame_skip)
        self.frameskip = int(frameskip)
        self.action_dim = int(mj_model.nu)
        self.nq, self.nv = int(mj_model.nq), int(mj_model.nv)
        self.device = torch.device("cpu")
        self.proprio_dim = 0
        self._cost = cost
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS.value
        self._nstate = mujoco.mj_stateSize(mj_model, spec)
        if self._nstate != 1 + self.nq + self.nv:
            raise ValueError("the oracle supports models without actuator or plugin state")
        threads = resolve_threads(threads)
        self._datas = [mujoco.MjData(mj_model) for _ in range(max(threads, 1))]
        self._rollout = rollout.Rollout(nthread=threads if threads > 1 else 0)

    @classmethod
    def from_env(cls, env: Any, frameskip: int = 5, threads: int | str = 0) -> OracleModel:
        """The oracle of a goal-image task (or a wrapper around one)."""
        env = getattr(env, "unwrapped", env)
        return cls(env.model, env.frame_skip, env.oracle_cost, frameskip, threads)

    # ------------------------------------------------------------------ latents
    def encode(self, frames: Any) -> Tensor:
        raise TypeError("the oracle reads simulator states, not pixels: use encode_state()")

    def encode_state(self, qpos: Any, qvel: Any | None = None) -> Tensor:
        """Joint positions [B,nq] (and velocities [B,nv]) -> latents [B,1,nq+nv]."""
        qpos = torch.as_tensor(np.asarray(qpos, dtype=np.float64)).reshape(-1, self.nq)
        if qvel is None:
            qvel = torch.zeros(qpos.shape[0], self.nv, dtype=torch.float64)
        qvel = torch.as_tensor(np.asarray(qvel, dtype=np.float64)).reshape(-1, self.nv)
        return torch.cat([qpos, qvel], dim=1).unsqueeze(1)

    # ------------------------------------------------------------------ protocol
    def rollout(self, z: Tensor, actions: Tensor, proprio: Tensor | None = None) -> Tensor:
        """z [B,1,nq+nv], actions [B,H,fs,A] -> the simulated states after each block
        [B,H,1,nq+nv]. Each env-step action is held for ``env_frame_skip`` physics steps,
        exactly as ``ReachEnv.step`` does."""
        if actions.dim() != 4 or actions.shape[2:] != (self.frameskip, self.action_dim):
            raise ValueError(
                f"actions must be [B,H,{self.frameskip},{self.action_dim}], "
                f"got {tuple(actions.shape)}"
            )
        batch, horizon = actions.shape[:2]
        state0 = np.zeros((batch, self._nstate))
        state0[:, 1:] = z.detach().reshape(batch, -1).cpu().numpy()
        control = actions.detach().cpu().numpy().astype(np.float64).clip(-1.0, 1.0)
        control = np.repeat(control.reshape(batch, -1, self.action_dim), self.env_frame_skip, 1)
        states, _ = self._rollout.rollout(self.mj_model, self._datas, state0, control)
        per_block = self.frameskip * self.env_frame_skip
        ends = states[:, per_block - 1 :: per_block, 1:]  # [B,H,nq+nv]
        return torch.from_numpy(np.ascontiguousarray(ends)).unsqueeze(2)

    def distance(self, z: Tensor, z_goal: Tensor, metric: str = "l1") -> Tensor:
        """Mean (l1) or mean square (l2) of the task's cost against the goal state:
        [B,...,1,S] -> [B,...]."""
        if metric not in ("l1", "l2"):
            raise ValueError(f"unknown energy metric {metric!r} (known: l1, l2)")
        while z_goal.dim() < z.dim():
            z_goal = z_goal.unsqueeze(1)
        qpos = z[..., : self.nq].detach().cpu().numpy()
        goal = z_goal[..., : self.nq].detach().cpu().numpy()
        errors = torch.from_numpy(np.asarray(self._cost(qpos, goal), np.float64))
        if metric == "l2":
            errors = errors.pow(2)
        return errors.mean(dim=(-2, -1))

    def to(self, device: Any) -> OracleModel:
        if torch.device(device).type != "cpu":
            raise ValueError("the MuJoCo oracle runs on the CPU only")
        return self

    def close(self) -> None:
        if self._rollout is not None:
            self._rollout.close()
            self._rollout = None


def _can_collide(mj_model: Any) -> bool:
    """Whether any two geoms could make contact (contype of one meets conaffinity of another)."""
    contype = np.asarray(mj_model.geom_contype)
    conaffinity = np.asarray(mj_model.geom_conaffinity)
    return bool(np.any((contype[:, None] & conaffinity[None, :]) != 0))


def resolve_threads(threads: int | str) -> int:
    """``mujoco.rollout`` worker threads: "auto" uses up to 8 cores where there are more than
    two (on two cores the threads only compete with the caller); 0 or 1 runs on the caller."""
    if threads == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return min(int(cores or 1), 8) if (cores or 1) > 2 else 0
    try:
        value = int(threads)
    except (TypeError, ValueError):
        raise ValueError(f"oracle threads must be an integer or 'auto', got {threads!r}") from None
    if value < 0:
        raise ValueError(f"oracle threads must be non-negative, got {value}")
    return value
