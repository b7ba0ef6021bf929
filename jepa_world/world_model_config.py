"""``WorldModelConfig``: everything needed to rebuild a world model (its folder's config.json).

Kept apart from the model so that schemas, the build and tools that only read a model's
settings need not construct one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class WorldModelConfig:
    """Everything needed to rebuild a world model (stored as config.json)."""

    encoder: dict[str, Any]  # EncoderConfig.to_dict()
    predictor: dict[str, Any]  # embed_dim, depth, num_heads, mlp_ratio
    action_dim: int
    frameskip: int = 1
    proprio_dim: int = 0
    pool: list[int] | None = None  # [h, w] token grid after pooling; None = full grid
    # how each pooled cell is made from the encoder tokens it covers: "mean" averages them
    # (width D); "stack" concatenates them in raster order (width D * cell size), which keeps
    # where inside the cell each feature is, e.g. which way a small object points
    pool_mode: str = "mean"
    latent_mean: list[float] = field(default_factory=list)  # per channel, from training data
    latent_std: list[float] = field(default_factory=list)
    proprio_mean: list[float] = field(default_factory=list)
    proprio_std: list[float] = field(default_factory=list)
    image_mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    image_std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    env_id: str | None = None
    # End-to-end models (train_ac encoder.train=true): a latent head (LatentHeadConfig) that
    # turns a frame's tokens into one embedding; None = the frozen path's pooled tokens
    head: dict[str, Any] | None = None
    # Planner settings the model was built to be used with (e.g. {"horizon": 5}); planners.mpc
    # applies them unless the command line sets the same keys.
    planning: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """The statistics lists are shown by length: printing a config is for reading it."""
        parts = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name.endswith(("_mean", "_std")) and isinstance(value, list) and len(value) > 3:
                parts.append(f"{name}=[{len(value)} values]")
            else:
                parts.append(f"{name}={value!r}")
        return f"WorldModelConfig({', '.join(parts)})"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown world-model config keys {sorted(unknown)}")
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:  # the declared types, checked (an int field holding "four" is refused)
            typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
        except OmegaConfBaseException as exc:
            text = " ".join(str(exc).split()).split(" full_key:")[0]
            key = getattr(exc, "full_key", None)
            raise ValueError(f"{f'{key}: ' if key else ''}{text}") from None
        return typed  # type: ignore[return-value]


def checked_statistic(name: str, values: Any, size: int, positive: bool) -> Tensor:
    """A normalisation statistic of a config: ``size`` finite values (std: all > 0), or one
    line; NaN or zero statistics would otherwise load fine and plan zeros."""
    tensor = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if tensor.numel() != size:
        raise ValueError(f"{name} must hold {size} values, got {tensor.numel()}")
    if not bool(torch.isfinite(tensor).all()) or (positive and not bool((tensor > 0).all())):
        kind = "finite and > 0" if positive else "finite"
        raise ValueError(f"{name} must be {kind}, got a value {_first_bad(tensor, positive)}")
    return tensor


def _first_bad(tensor: Tensor, positive: bool) -> float:
    bad = ~torch.isfinite(tensor)
    if positive:
        bad |= tensor <= 0
    return float(tensor[bad][0])
