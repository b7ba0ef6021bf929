"""A goal-conditioned policy trained on the planner's own objective, through the world model.

Amortised planning: instead of imitating the planner's (noisy, warm-start dependent) actions,
the policy is trained to do what the planner does, namely to minimise the planner's energy
(``planners.energy.Energy``: the same metric and step weighting) of the latents the
world model predicts when the policy acts. Each sample starts at a recorded frame (its latent
and proprioception, ``ImaginedStarts``) and aims at a goal latent: a frame the same episode
reached 1..``goal_within`` blocks later, or with probability ``uniform_goals`` any recorded
frame. The policy acts closed loop for ``horizon`` blocks inside the frozen model, one action
held per block (the planner's ``repeat_in_block``), and gradients flow through the model into
the policy. Only recorded frames and the model are used: no simulator, labels or success
signal. Steps draw their batch from ``seed`` and the step index, so a resumed run
(``checkpoint``) continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jepa_world.rl.imagined import ImaginedStarts

LOSSES = ("energy", "root")


@dataclass
class ImaginationSettings:
    steps: int = 6000
    batch_size: int = 256
    horizon: int = 4  # blocks the policy acts per sample
    goal_within: int = 6  # reachable goals: at most this many blocks ahead in the recording
    uniform_goals: float = 0.2  # fraction of goals drawn from any recorded frame
    still_goals: float = 0.0  # fraction of goals equal to the start frame (hold a reached goal)
    lr: float = 1.0e-3  # cosine-decayed to 0 over ``steps``
    weight_decay: float = 1.0e-4
    clip_grad: float = 0.0  # > 0: clip the gradient norm (the imagined energy can spike)
    loss: str = "energy"  # or "root": the square root of each block's energy (see below)
    checkpoint_every: int = 500

    def validate(self) -> None:
        for name in ("steps", "batch_size", "horizon", "goal_within", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"imagination.{name} must be a positive integer, got {value}")
        for name in ("uniform_goals", "still_goals"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"imagination.{name} must be in [0, 1], got {value}")
        if self.loss not in LOSSES:
            raise ValueError(f"imagination.loss must be one of {', '.join(LOSSES)}, "
                             f"got {self.loss!r}")
        if self.uniform_goals + self.still_goals > 1.0:
            raise ValueError(f"imagination.uniform_goals + still_goals must be at most 1, got "
                             f"{self.uniform_goals} + {self.still_goals}")
        if not 0.0 < self.lr < float("inf"):
            raise ValueError(f"imagination.lr must be positive and finite, got {self.lr}")
        for name in ("weight_decay", "clip_grad"):
            value = getattr(self, name)
            if not 0.0 <= value < float("inf"):
                raise ValueError(f"imagination.{name} must be >= 0 and finite, got {value}")


class RecordedFrames:
    """Every recorded frame's latent and proprioception in one tensor, for batched draws."""

    def __init__(self, starts: ImaginedStarts, frameskip: int, proprio: bool) -> None:
        self.latents = torch.cat(starts.latents)
        self.proprio = torch.cat(starts.proprio).float() if proprio else None
        self.lengths = np.asarray(starts.lengths)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.frameskip = int(frameskip)

    def draw(self, rng: np.random.Generator, count: int, goal_within: int,
             uniform_goals: float, still_goals: float = 0.0
             ) -> tuple[Tensor, Tensor | None, Tensor]:
        """(start latents, start proprio, goal latents) of ``count`` samples: goals later in
        the same recording, any recorded frame (``uniform_goals``) or the start frame itself
        (``still_goals``: the arm, moving as recorded, must come back and stay)."""
        episode = rng.integers(len(self.lengths), size=count)
        length = self.lengths[episode]
        start = (rng.random(count) * (length - self.frameskip)).astype(np.int64)
        reachable = (length - 1 - start) // self.frameskip
        ahead = 1 + (rng.random(count) * np.minimum(goal_within, reachable)).astype(np.int64)
        goal = self.offsets[episode] + start + ahead * self.frameskip
        anywhere = rng.random(count) < uniform_goals
        goal[anywhere] = rng.integers(len(self.latents), size=int(anywhere.sum()))
        index = torch.from_numpy(self.offsets[episode] + start)
        if still_goals > 0:  # no extra draw otherwise: earlier runs' batches stay the same
            still = ~anywhere & (rng.random(count) < still_goals / max(1e-12, 1 - uniform_goals))
            goal[still] = index.numpy()[still]
        proprio = None if self.proprio is None else self.proprio[index]
        return self.latents[index], proprio, self.latents[torch.from_numpy(goal)]

    def input_statistics(self) -> tuple[Tensor, Tensor]:
        """Mean and std of the policy's input [latent | proprio | goal latent] over the frames."""
        parts = [self.latents.flatten(1)]
        if self.proprio is not None:
            parts.append(self.proprio)
        frames = torch.cat(parts, 1)
        mean, std = frames.mean(0), frames.std(0) + 1e-4
        latent_mean, latent_std = mean[: self.latents[0].numel()], std[: self.latents[0].numel()]
        return torch.cat([mean, latent_mean]), torch.cat([std, latent_std])


def policy_inputs(z: Tensor, proprio: Tensor | None, goal: Tensor) -> Tensor:
    """The flat [latent | proprio | goal latent] of ``LatentLayout``, differentiably."""
    parts = [z.flatten(1)] + ([] if proprio is None else [proprio]) + [goal.flatten(1)]
    return torch.cat(parts, 1)


def imagination_loss(objective: Any, kind: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The per-sample loss the student descends. ``energy``: the planner's energy itself.
    ``root``: the mean over blocks of the square root of each block's energy. Both are zero
    exactly at the goal latent, but a squared distance has a gradient that vanishes there, so
    the student learns to come close and not to stop on the goal; the root's gradient keeps
    its size near the goal. Blocks are weighted as the planner weighs them."""
    if kind == "energy":
        return objective
    if kind != "root":
        raise ValueError(f"unknown imagination loss {kind!r} (known: {', '.join(LOSSES)})")

    def root_distance(z: Tensor, goal: Tensor, metric: str) -> Tensor:
        return objective.block_distance(z, goal).clamp_min(1e-12).sqrt()

    return replace(objective, distance=root_distance, extra=None)


def train_in_imagination(
    net: torch.nn.Module,
    world_model: Any,
    frames: RecordedFrames,
    settings: ImaginationSettings,
    planner_settings: Any,
    seed: int,
    checkpoint: str | Path | None = None,
    report: Callable[[int, float], None] | None = None,
    stop_at_step: int | None = None,
) -> list[dict[str, float]]:
    """Train ``net`` (``StudentNet``: flat input -> one env-step action in the action box) to
    minimise the planner's energy; returns [{step, energy}] every ``checkpoint_every`` steps.
    ``checkpoint`` (a file) is written atomically and resumed from when it exists;
    ``stop_at_step`` ends this call early (the schedule still spans ``settings.steps``)."""
    from jepa_world.files import save_torch_atomic

    settings.validate()
    objective = imagination_loss(planner_settings.objective(world_model), settings.loss)
    for param in world_model.parameters():
        param.requires_grad_(False)
    optimizer = torch.optim.AdamW(net.mlp.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    step, history = 0, []
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, history = int(state["step"]), list(state["history"])
        print(f"resuming imagination training at step {step}/{settings.steps}", file=sys.stderr)
    fs = int(world_model.frameskip)
    device = world_model.device
    net.train()
    window: list[float] = []
    stop = settings.steps if stop_at_step is None else min(stop_at_step, settings.steps)
    while step < stop:
        rng = np.random.default_rng([seed, step])
        z, proprio, goal = frames.draw(rng, settings.batch_size, settings.goal_within,
                                       settings.uniform_goals, settings.still_goals)
        goal = goal.to(device)

        def act(latent: Tensor, p: Tensor | None, goal: Tensor = goal) -> Tensor:
            action = net(policy_inputs(latent, p, goal))
            return action.unsqueeze(1).expand(-1, fs, -1)

        predicted, _ = world_model.rollout_policy(z.to(device), act, settings.horizon,
                                                  None if proprio is None else proprio.to(device))
        loss = objective(predicted, goal).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the imagined energy is {float(loss)} at step {step}: "
                                     "lower imagination.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(net.mlp.parameters(), settings.clip_grad)
        optimizer.step()
        schedule.step()
        step += 1
        window.append(float(loss.detach()))
        if report is not None:
            report(step, window[-1])
        if step % settings.checkpoint_every == 0 or step == stop:
            history.append({"step": step, "energy": float(np.mean(window))})
            window = []
            if path is not None:
                save_torch_atomic({"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                                   "schedule": schedule.state_dict(), "step": step,
                                   "history": history}, path)
    net.eval()
    return history
