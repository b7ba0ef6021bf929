"""A state readout: a small MLP that reads the joint configuration off a world model's latent.

Why: far from the goal the latent distance stops falling (the arm in two distant poses looks
"equally different"), so a planner scoring latents alone gets stuck. The readout is trained
on recorded episodes (frames and the recorded ``qpos``, never an evaluation episode) and is
applied to the predicted latents and to the goal image's latent alike, so the planner still
sees only images and proprioception, never the goal state. Joints that turn freely (MuJoCo
hinges without limits) are read as (cos, sin), every other coordinate as itself: a limited
joint must not be told that the short way round passes through its limit.

One folder, ``readout/`` inside the world model's folder: ``weights.safetensors`` +
``config.json`` (widths, which coordinates are periodic, the planner weight and margin, the
fingerprint of the world model it reads).
The command that fits one is ``python -m jepa_world.readout`` (``__main__.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from jepa_world.field_checks import finite_numbers, positive_ints
from jepa_world.model_files import CONFIG, WEIGHTS


@dataclass
class ReadoutConfig:
    latent_size: int  # tokens * width of the latent it reads
    periodic: list[bool]  # per recorded qpos coordinate: read as (cos, sin)
    hidden: int = 256
    weight: float = 10.0  # the planner's default weight of the readout term
    margin: float = 0.09  # squared readout distance below which the term is off (~0.3 rad)
    world_model_fingerprint: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive_ints(self, "latent_size", "hidden")
        finite_numbers(self, "weight", "margin", minimum=0.0)
        if (not isinstance(self.periodic, list) or not self.periodic
                or not all(isinstance(p, bool) for p in self.periodic)):
            raise ValueError(f"periodic must be a list of true/false, got {self.periodic!r}")

    @property
    def features(self) -> int:
        return sum(2 if p else 1 for p in self.periodic)


def joint_features(qpos: Tensor, periodic: list[bool]) -> Tensor:
    """[..., Q] -> [..., F]: (cos, sin) of the periodic coordinates, the others as they are."""
    parts = []
    for i, wraps in enumerate(periodic):
        q = qpos[..., i]
        parts += [torch.cos(q), torch.sin(q)] if wraps else [q]
    return torch.stack(parts, -1)


def periodic_coordinates(task: Any) -> list[bool]:
    """Which qpos coordinates of a MuJoCo task turn freely (unlimited hinge joints)."""
    import mujoco

    model = task.unwrapped.model
    periodic = [False] * int(model.nq)
    for joint in range(int(model.njnt)):
        if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_HINGE and not model.jnt_limited[joint]:
            periodic[int(model.jnt_qposadr[joint])] = True
    return periodic


class StateReadout(nn.Module):
    """latent [..., K, D] -> joint features [..., F] (inputs standardised by buffers)."""

    def __init__(self, config: ReadoutConfig) -> None:
        super().__init__()
        self.config = config
        self.mlp = nn.Sequential(
            nn.Linear(config.latent_size, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.features),
        )
        self.register_buffer("input_mean", torch.zeros(config.latent_size))
        self.register_buffer("input_std", torch.ones(config.latent_size))

    def forward(self, z: Tensor) -> Tensor:
        flat = z.flatten(-2)
        return self.mlp((flat - self.input_mean) / self.input_std)

    def term(self, z: Tensor, goal: Tensor, weight: float) -> Tensor:
        """The energy term: weight * max(0, |R(z) - R(goal)|^2 - margin), [..., K, D] -> [...]."""
        gap = (self(z) - self(goal)).pow(2).sum(-1)
        return weight * (gap - self.config.margin).clamp_min(0)

    def save(self, directory: str | Path) -> Path:
        from jepa_world.files import save_safetensors_atomic, write_json_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_safetensors_atomic(self.state_dict(), directory / WEIGHTS)
        write_json_atomic(directory / CONFIG, asdict(self.config), sort_keys=False)
        return directory

    @classmethod
    def load(cls, directory: str | Path, world_model: Any) -> StateReadout:
        """A saved readout, checked against the world model whose latents it reads."""
        from jepa_world.files import load_safetensors_into

        directory = Path(directory)
        try:
            config = ReadoutConfig(**json.loads((directory / CONFIG).read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(f"no state readout config in {directory}") from None
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            message = " ".join(str(exc).split())[:200]
            raise ValueError(f"state readout in {directory} is unusable: {message}") from None
        tokens, width = world_model.latent_shape
        if config.latent_size != tokens * width:
            raise ValueError(f"the state readout in {directory} reads {config.latent_size} "
                             f"latent values, the world model gives {tokens * width}")
        readout = cls(config)
        load_safetensors_into(readout, directory / WEIGHTS, "state readout")
        expected = config.world_model_fingerprint
        if expected is not None and expected != world_model.fingerprint():
            raise ValueError(f"the state readout in {directory} was fitted on another world "
                             "model: fit it again (python -m jepa_world.readout)")
        return readout.to(world_model.device).eval().requires_grad_(False)


def fit_readout(world_model: Any, datasets: list[Any], periodic: list[bool], steps: int = 4000,
                seed: int = 0, hidden: int = 256, batch_size: int = 512,
                validation_fraction: float = 0.1) -> StateReadout:
    """Fit on the encoded frames of the first 90 % of the episodes; the last 10 % give the
    validation errors stored in the config (per coordinate: angle error for periodic ones)."""
    from jepa_world.data.latents import LatentTrajectories

    with torch.no_grad():
        encoded = LatentTrajectories(datasets, world_model, 256, show_progress=False)
    qpos = []
    for data in datasets:
        for ep in range(len(data)):
            arrays = data.arrays(ep)
            if "qpos" not in arrays:
                raise ValueError(f"{data.root} episode {ep} records no qpos")
            qpos.append(torch.as_tensor(arrays["qpos"], dtype=torch.float32))
    if any(q.shape[-1] != len(periodic) for q in qpos):
        raise ValueError(f"the recordings' qpos do not have the task's {len(periodic)} coordinates")
    z = [x.float() for x in encoded.latents]  # [T,K,D] per episode
    if len(z) < 2:
        raise ValueError("fitting a state readout needs at least 2 recorded episodes")
    split = max(1, min(len(z) - 1, int(round((1 - validation_fraction) * len(z)))))
    x_train = torch.cat(z[:split])
    y_train = joint_features(torch.cat(qpos[:split]), periodic)
    tokens, width = world_model.latent_shape
    torch.manual_seed(seed)
    readout = StateReadout(ReadoutConfig(tokens * width, list(periodic), hidden,
                                         world_model_fingerprint=world_model.fingerprint()))
    readout.input_mean.copy_(x_train.flatten(1).mean(0))
    readout.input_std.copy_(x_train.flatten(1).std(0) + 1e-4)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(readout.mlp.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        index = torch.randint(len(x_train), (batch_size,), generator=generator)
        loss = nn.functional.mse_loss(readout(x_train[index]), y_train[index])
        if not torch.isfinite(loss):
            raise FloatingPointError("the readout's loss is not finite")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    readout.eval()
    with torch.no_grad():
        errors = coordinate_errors(readout(torch.cat(z[split:])), torch.cat(qpos[split:]),
                                   periodic)
    readout.config.validation = {"episodes": len(z) - split,
                                 "median": [round(float(e.median()), 4) for e in errors],
                                 "p90": [round(float(e.quantile(0.9)), 4) for e in errors]}
    return readout.requires_grad_(False)


def features_to_qpos(features: Tensor, periodic: list[bool]) -> Tensor:
    """[..., F] -> [..., Q]: the inverse of ``joint_features`` (angles from (cos, sin))."""
    coordinates, column = [], 0
    for wraps in periodic:
        if wraps:
            coordinates.append(torch.atan2(features[..., column + 1], features[..., column]))
            column += 2
        else:
            coordinates.append(features[..., column])
            column += 1
    return torch.stack(coordinates, -1)


def coordinate_errors(features: Tensor, qpos: Tensor, periodic: list[bool]) -> list[Tensor]:
    """Absolute error per qpos coordinate (wrapped angle error for the periodic ones)."""
    read = features_to_qpos(features, periodic)
    errors = []
    for i, wraps in enumerate(periodic):
        diff = read[:, i] - qpos[:, i]
        errors.append(torch.atan2(torch.sin(diff), torch.cos(diff)).abs() if wraps else diff.abs())
    return errors
