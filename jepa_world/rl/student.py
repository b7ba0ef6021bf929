"""A small goal-conditioned MLP policy distilled from the planner: one encoder pass and a few
matrix products per env step instead of a search.

It reads ``[latent | proprio | goal latent]`` (``LatentLayout``): a flat ``LatentObservation``
vector, or the task's dict observation with the goal image (it then encodes with its world
model, the goal once per episode). One directory: ``weights.safetensors`` + ``config.json``
(layout, widths, action box, the world model it reads).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from jepa_world.field_checks import finite_numbers, positive_ints
from jepa_world.rl.layout import LatentLayout
from planners.policies import EpisodeSlots, PolicyStats, batch_observations
from planners.tail import GoalPolicy, PolicyTail

WEIGHTS, CONFIG = "weights.safetensors", "config.json"
STUDENT_DIR = "student"  # a shipped model's distilled policy, inside its asset folder


@dataclass
class StudentConfig:
    world_model: str  # directory or shipped name of the world model whose latents it reads
    tokens: int
    width: int
    proprio_dim: int
    action_dim: int
    frameskip: int
    hidden: int = 256
    depth: int = 2
    action_low: float = -1.0
    action_high: float = 1.0
    # WorldModel.fingerprint() of the model it was distilled on (None: saved before it existed)
    world_model_fingerprint: str | None = None

    def __post_init__(self) -> None:
        positive_ints(self, "tokens", "width", "action_dim", "frameskip", "hidden", "depth")
        positive_ints(self, "proprio_dim", minimum=0)
        finite_numbers(self, "action_low", "action_high")
        if not self.action_low < self.action_high:
            raise ValueError(f"action_low {self.action_low} must be below action_high "
                             f"{self.action_high}")


class StudentNet(nn.Module):
    """MLP with a tanh squashed into the action box. Inputs are standardised with the
    statistics of the distillation data (kept as buffers)."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        layout = LatentLayout(config.tokens, config.width, config.proprio_dim, True)
        layers: list[nn.Module] = []
        width = layout.size
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.GELU()]
            width = config.hidden
        layers.append(nn.Linear(width, config.action_dim))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("input_mean", torch.zeros(layout.size))
        self.register_buffer("input_std", torch.ones(layout.size))
        self.low, self.high = float(config.action_low), float(config.action_high)

    def forward(self, flat: Tensor) -> Tensor:
        x = (flat - self.input_mean) / self.input_std
        squashed = torch.tanh(self.mlp(x))
        return self.low + 0.5 * (squashed + 1.0) * (self.high - self.low)


class StudentPolicy:
    """The distilled policy with stable-baselines3's ``predict`` convention; a drop-in for
    ``PlannerPolicy`` in ``planners.mpc`` (``--policy DIR``)."""

    kind = "distilled"
    settings = None

    def __init__(self, config: StudentConfig, world_model: Any = None,
                 net: StudentNet | None = None) -> None:
        self.config = config
        self.net = (net or StudentNet(config)).eval()
        self.world_model = world_model
        self.layout = LatentLayout(config.tokens, config.width, config.proprio_dim, True)
        self.frameskip = int(config.frameskip)
        self.stats = PolicyStats()
        self.slots = EpisodeSlots(0)  # per-episode latencies, reset on episode_start
        self._goal: Tensor | None = None

    # ------------------------------------------------------------------ acting
    def bind(self, tasks: list, infos: list, seeds: list[int]) -> None:
        pass

    @torch.no_grad()
    def predict(self, obs: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        started = time.perf_counter()
        batch, count, single = batch_observations(obs)
        starts = self.slots.starts(episode_start, count)
        for e in starts:
            self.slots.start(e)
        if isinstance(batch, dict):
            flat = self._flat_from_pixels(batch, starts)
        else:
            if batch.shape[1] != self.layout.size:
                raise ValueError(f"flat observations must have {self.layout.size} values, "
                                 f"got {batch.shape[1]}")
            flat = torch.from_numpy(batch)
        actions = self.net(flat.float()).numpy()
        elapsed = 1000.0 * (time.perf_counter() - started)
        self.stats.replans += 1
        self.stats.planner_s += elapsed / 1000.0
        self.stats.call_ms.append(elapsed)
        for e in range(count):
            self.slots.plan_ms[e].append(round(elapsed, 3))
        return (actions[0] if single else actions), None

    def proposal(self, world_model: Any, horizon: int
                 ) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
        """This policy rolled out in ``world_model`` for ``horizon`` blocks from the current
        latent, each block's action held for its ``frameskip`` steps (as in imagination
        training): ``(z [E,K,D], goal [E,K,D], proprio [E,P] in env units or None) ->
        actions [E,H,fs,A]``, a proposal for a sampling planner
        (``PlannerPolicy(..., proposal=...)``)."""
        block_of = self._block_policy(world_model)

        @torch.no_grad()
        def propose(z: Tensor, goal: Tensor, proprio: Tensor | None) -> Tensor:
            chosen: list[Tensor] = []

            def act(latent: Tensor, p: Tensor | None) -> Tensor:
                block = block_of(latent, p, goal)
                chosen.append(block)
                return block

            world_model.rollout_policy(z, act, horizon, proprio)
            return torch.stack(chosen, 1)

        return propose

    def tail(self, world_model: Any, blocks: int) -> PolicyTail:
        """This policy as the tail of every sequence a sampling planner scores in
        ``world_model`` (``planners.tail``): ``blocks`` blocks, each action held for its
        ``frameskip`` steps as in imagination training."""
        return PolicyTail(self._block_policy(world_model), blocks)

    def _block_policy(self, world_model: Any) -> GoalPolicy:
        """(latent [B,K,D], proprio [B,P] or None, goal [B,K,D]) -> one action held for a
        block [B,fs,A], checked against ``world_model``."""
        from jepa_world.rl.amortized import policy_inputs

        fs = int(world_model.frameskip)
        if fs != self.frameskip or tuple(world_model.latent_shape) != (self.config.tokens,
                                                                        self.config.width):
            raise ValueError("the policy was distilled for another world model (frameskip "
                             "or latent shape differ)")

        def block(latent: Tensor, p: Tensor | None, goal: Tensor) -> Tensor:
            return self.net(policy_inputs(latent, p, goal)).unsqueeze(1).expand(-1, fs, -1)

        return block

    def _flat_from_pixels(self, batch: dict[str, np.ndarray], starts: list[int]) -> Tensor:
        """Encode the frames, and the goal images of the episodes that start now."""
        if self.world_model is None:
            raise ValueError("dict observations need the world model: StudentPolicy.load(dir)")
        if starts:
            if "goal_pixels" not in batch:
                raise ValueError("the observation holds no 'goal_pixels': wrap the env in "
                                 "jepa_world.rl.GoalImageObservation")
            goals = self.world_model.encode(torch.from_numpy(batch["goal_pixels"][starts])).cpu()
            if self._goal is None or self._goal.shape[0] != self.slots.count:
                self._goal = goals.new_zeros((self.slots.count, *goals.shape[1:]))
            self._goal[starts] = goals
        latent = self.world_model.encode(torch.from_numpy(batch["pixels"])).cpu()
        proprio = batch.get("proprio") if self.layout.proprio_dim else None
        return torch.from_numpy(self.layout.join(latent, proprio, self._goal))

    def episode_info(self, e: int) -> dict[str, Any]:
        return {"replans": len(self.slots.plan_ms[e]), "final_energy": None,
                "plan_ms": self.slots.plan_ms[e]}

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        from jepa_world.files import save_safetensors_atomic, write_json_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_safetensors_atomic(self.net.state_dict(), directory / WEIGHTS)
        write_json_atomic(directory / CONFIG, asdict(self.config))
        return directory

    @classmethod
    def load(cls, directory: str | Path, world_model: Any = None) -> StudentPolicy:
        """A saved student; its world model is loaded from its config unless given."""
        from jepa_world.files import load_safetensors_into

        directory = resolve_student_dir(directory)
        if not (directory / CONFIG).is_file():
            raise FileNotFoundError(f"no distilled policy at {directory} (missing {CONFIG})")
        try:
            config = StudentConfig(**json.loads((directory / CONFIG).read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"distilled policy config {directory / CONFIG} is invalid: "
                             f"{' '.join(str(exc).split())[:200]}") from None
        net = StudentNet(config)
        load_safetensors_into(net, directory / WEIGHTS, "distilled policy")
        if world_model is None:
            from jepa_world.world_model import WorldModel

            world_model = WorldModel.load(config.world_model)
        if tuple(world_model.latent_shape) != (config.tokens, config.width):
            raise ValueError(f"the policy in {directory} reads {config.tokens}x{config.width} "
                             f"latents but the world model gives {tuple(world_model.latent_shape)}")
        expected, actual = config.world_model_fingerprint, world_model.fingerprint()
        if expected is not None and expected != actual:
            raise ValueError(f"the policy in {directory} was distilled on another world model "
                             f"(fingerprint {expected}, this one {actual}): "
                             "distil it again for this model")
        return cls(config, world_model, net)


def resolve_student_dir(path_or_name: str | Path) -> Path:
    """A policy directory, or a task name whose shipped world model comes with a distilled
    student (jepa_world/assets/<task>/student)."""
    from jepa_world.world_model import SHIPPED, resolve_model_dir

    directory = Path(path_or_name).expanduser()
    name = str(path_or_name)
    if directory.is_dir() or name not in SHIPPED:
        return directory
    shipped = resolve_model_dir(name) / STUDENT_DIR
    if not (shipped / CONFIG).is_file():
        raise FileNotFoundError(f"the shipped {name} model comes with no distilled policy: make "
                                "one with python -m jepa_world.distill and pass its directory")
    return shipped
