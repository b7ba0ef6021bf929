"""The true simulator behind the world-model protocol: the upper bound for every planner.

The "latent" of a state is the joint state itself, ``[q1, q2, qd1, qd2]`` as a [B,1,4] float64
tensor (one token of width 4), ``rollout`` runs MuJoCo with ``mujoco.rollout`` (batched C
rollouts, optionally multi-threaded) from those exact states, and ``energy`` is the mean
joint-angle distance to the goal angles, wrapped for the unlimited shoulder and not for the
limited elbow, which cannot pass through +-pi (velocities are ignored: the damped arm stops
within a few milliseconds). The oracle reads the simulator state and the goal joint angles,
which a fair planner never sees: its numbers bound what a perfect world model could achieve
with the same planner and budget; they are not a result of learning.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor


class OracleModel:
    """Implements ``planners.base.WorldModelProtocol`` with the simulator (CPU only)."""

    def __init__(
        self, mj_model: Any, env_frame_skip: int, frameskip: int = 5, threads: int | str = 0
    ) -> None:
        from envs._gl import import_mujoco

        mujoco = import_mujoco()  # headless GL default first: the envs render in this process
        from mujoco import rollout

        # A private copy without the stages this model never uses (it has no contacts and no
        # sensors): the same trajectories, about 20% faster.
        mj_model = copy.deepcopy(mj_model)
        unused = mujoco.mjtDisableBit
        mj_model.opt.disableflags |= unused.mjDSBL_CONTACT.value | unused.mjDSBL_SENSOR.value
        self.mj_model = mj_model
        self.env_frame_skip = int(env_frame_skip)
        self.frameskip = int(frameskip)
        self.action_dim = int(mj_model.nu)
        self.nq, self.nv = int(mj_model.nq), int(mj_model.nv)
        self.device = torch.device("cpu")
        self.proprio_dim = 0
        # Only unlimited joints wrap: the elbow (range +-2.8) cannot reach its goal through +-pi.
        self._wrap = torch.tensor([not bool(flag) for flag in mj_model.jnt_limited[: self.nq]])
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS.value
        self._nstate = mujoco.mj_stateSize(mj_model, spec)
        if self._nstate != 1 + self.nq + self.nv or self.nq != self.nv:
            raise ValueError("the oracle supports hinge-joint models without actuator state")
        threads = resolve_threads(threads)
        self._datas = [mujoco.MjData(mj_model) for _ in range(max(threads, 1))]
        self._rollout = rollout.Rollout(nthread=threads if threads > 1 else 0)

    @classmethod
    def from_env(cls, env: Any, frameskip: int = 5, threads: int | str = 0) -> OracleModel:
        """The oracle of a ReachEnv (or a wrapper around one)."""
        env = getattr(env, "unwrapped", env)
        return cls(env.model, env.frame_skip, frameskip=frameskip, threads=threads)

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

    def energy(self, z: Tensor, z_goal: Tensor, metric: str = "l1") -> Tensor:
        """Mean joint-angle distance to the goal angles (unlimited joints wrapped):
        [B,...,1,4] -> [B,...]."""
        if z_goal.dim() == 3 and z.dim() == 4:
            z_goal = z_goal.unsqueeze(1)
        diff = z[..., : self.nq] - z_goal[..., : self.nq].to(z.dtype)
        wrapped = math.pi - torch.remainder(math.pi - diff, 2.0 * math.pi)
        diff = torch.where(self._wrap, wrapped, diff)
        if metric == "l1":
            return diff.abs().mean(dim=(-2, -1))
        if metric == "l2":
            return diff.pow(2).mean(dim=(-2, -1))
        raise ValueError(f"unknown energy metric {metric!r} (known: l1, l2)")

    def to(self, device: Any) -> OracleModel:
        if torch.device(device).type != "cpu":
            raise ValueError("the MuJoCo oracle runs on the CPU only")
        return self

    def close(self) -> None:
        if self._rollout is not None:
            self._rollout.close()
            self._rollout = None


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
