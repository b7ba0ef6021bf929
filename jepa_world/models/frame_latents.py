"""From frames to the latent layout a world model plans in, around the encoder itself.

``frames_as_images`` accepts the frame formats of ``WorldModel.encode`` and ``resized`` brings
them to the encoder's input size; ``LatentLayout`` says how many tokens of what width make one frame's latent and
pools the encoder's token grid into it (the frozen path; a latent head makes one token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

POOL_MODES = ("mean", "stack")


@dataclass(frozen=True)
class LatentLayout:
    """``pool`` cells of ``cell`` encoder tokens each; "mean" averages a cell's tokens (width D),
    "stack" concatenates them in raster order (width D * cell size)."""

    grid: tuple[int, int]
    pool: tuple[int, int]
    mode: str
    width: int  # the encoder's token width D

    @classmethod
    def build(cls, grid: tuple[int, int], pool: list[int] | None, mode: str, width: int,
              head_dim: int | None) -> LatentLayout:
        """``head_dim``: the latent head's embedding width, for a model built end to end."""
        if mode not in POOL_MODES:
            raise ValueError(f"unknown pool_mode {mode!r} (known: {', '.join(POOL_MODES)})")
        if head_dim is not None:
            if pool is not None and tuple(pool) != (1, 1):
                raise ValueError("a world model with a latent head takes no pool (the head "
                                 f"makes one vector per frame), got pool {pool}")
            return cls(grid=grid, pool=(1, 1), mode="mean", width=head_dim)
        cells = tuple(pool) if pool else tuple(grid)
        if len(cells) != 2 or grid[0] % cells[0] or grid[1] % cells[1]:
            raise ValueError(f"pool {cells} does not divide the token grid {grid}")
        return cls(grid=grid, pool=cells, mode=mode, width=width)  # type: ignore[arg-type]

    @property
    def cell(self) -> tuple[int, int]:
        return self.grid[0] // self.pool[0], self.grid[1] // self.pool[1]

    @property
    def tokens_per_frame(self) -> int:
        return self.pool[0] * self.pool[1]

    @property
    def latent_dim(self) -> int:
        stacked = self.cell[0] * self.cell[1] if self.mode == "stack" else 1
        return self.width * stacked

    def pool_tokens(self, tokens: Tensor) -> Tensor:
        """Encoder tokens [N, gh*gw, D] -> [N, K, latent_dim]."""
        n, _, d = tokens.shape
        gh, gw = self.grid
        if (gh, gw) == self.pool:
            return tokens
        if self.mode == "stack":
            (ph, pw), (ch, cw) = self.pool, self.cell
            cells = tokens.reshape(n, ph, ch, pw, cw, d).permute(0, 1, 3, 2, 4, 5)
            return cells.reshape(n, ph * pw, ch * cw * d)
        grid = tokens.transpose(1, 2).reshape(n, d, gh, gw)
        return F.adaptive_avg_pool2d(grid, self.pool).flatten(2).transpose(1, 2)


def frames_as_images(frames: Tensor | Any) -> tuple[Tensor, tuple[int, int], bool]:
    """uint8 [B,T,H,W,3] / [B,H,W,3] or float [B,T,3,H,W] / [B,3,H,W] in [0,1] -> float images
    [B*T,3,H,W] in [0,1], (B, T), and whether a single frame per item was given."""
    frames = torch.as_tensor(frames)
    single = False
    if frames.dtype == torch.uint8:
        if frames.dim() == 4:
            frames, single = frames.unsqueeze(1), True
        if frames.dim() != 5 or frames.shape[-1] != 3:
            raise ValueError(
                f"uint8 frames must be [B,T,H,W,3] or [B,H,W,3], got {tuple(frames.shape)}"
            )
        frames = frames.permute(0, 1, 4, 2, 3).float() / 255.0
    elif frames.is_floating_point():
        if frames.dim() == 4:
            frames, single = frames.unsqueeze(1), True
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(
                f"float frames must be [B,T,3,H,W] or [B,3,H,W], got {tuple(frames.shape)}"
            )
    else:
        raise ValueError(f"frames must be uint8 or floating point, got {frames.dtype}")
    b, t = frames.shape[:2]
    images = frames.reshape(b * t, *frames.shape[2:])
    return images, (b, t), single


def resized(images: Tensor, size: int) -> Tensor:
    """Images [N,3,H,W] at the encoder's input size (antialiased bilinear when they differ)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)
