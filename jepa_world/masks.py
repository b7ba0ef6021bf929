"""Multiblock 3D masks for V-JEPA pretraining.

Each mask type hides the union of several spatio-temporal blocks; the hidden tokens are the
prediction targets and the visible complement is the encoder's context. Large blocks that
span the whole clip in time stop the predictor from copying a token from a neighbouring frame,
which is what forces it to model content rather than interpolate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

Grid = tuple[int, int, int]


@dataclass
class MaskSpec:
    """One mask type: `num_blocks` blocks per sample, sizes as fractions of the grid.

    spatial_scale: (min, max) fraction of the h*w frame area per block.
    temporal_scale: (min, max) fraction of the time steps per block (1.0 = the whole clip).
    aspect_ratio: (min, max) block height / width.
    """

    num_blocks: int
    spatial_scale: tuple[float, float]
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)

    def __post_init__(self) -> None:
        # Hydra / YAML hand over lists; keep tuples so specs are hashable and printable.
        self.spatial_scale = tuple(float(v) for v in self.spatial_scale)
        self.temporal_scale = tuple(float(v) for v in self.temporal_scale)
        self.aspect_ratio = tuple(float(v) for v in self.aspect_ratio)
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        for name in ("spatial_scale", "temporal_scale", "aspect_ratio"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (min, max) with 0 < min <= max, got {(lo, hi)}")


# V-JEPA: short-range (8 small blocks) and long-range (2 large blocks) masks.
DEFAULT_MASKS: list[MaskSpec] = [
    MaskSpec(num_blocks=8, spatial_scale=(0.15, 0.15)),
    MaskSpec(num_blocks=2, spatial_scale=(0.7, 0.7)),
]

MAX_POSITION_TRIES = 20  # redraws of a sample's block positions before shrinking the blocks


class MultiBlockMaskSampler:
    """Draws (context_idx, target_idx) pairs, one per mask spec, for a batch of clips.

    Block sizes are drawn once per call and shared by the batch; positions are drawn per
    sample. Counts differ between samples, so every sample is trimmed to the batch minimum
    (dropping its highest indices), which keeps tensors rectangular as in V-JEPA.
    """

    def __init__(self, grid: Grid, specs: list[MaskSpec] = DEFAULT_MASKS) -> None:
        self.grid: Grid = tuple(int(g) for g in grid)
        if len(self.grid) != 3 or min(self.grid) < 1:
            raise ValueError(f"grid must be three positive ints (t, h, w), got {grid}")
        if self.grid[0] * self.grid[1] * self.grid[2] < 2:
            raise ValueError("a grid of one token cannot hold both context and target")
        self.specs = list(specs)
        if not self.specs:
            raise ValueError("need at least one MaskSpec")

    @staticmethod
    def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
        return lo + torch.rand(1, generator=generator).item() * (hi - lo)

    def _block_size(self, spec: MaskSpec, generator: torch.Generator | None) -> Grid:
        gt, gh, gw = self.grid
        t_scale = self._uniform(*spec.temporal_scale, generator)
        s_scale = self._uniform(*spec.spatial_scale, generator)
        aspect = self._uniform(*spec.aspect_ratio, generator)
        area = gh * gw * s_scale
        t = min(gt, max(1, int(gt * t_scale)))
        h = min(gh, max(1, int(round(math.sqrt(area * aspect)))))
        w = min(gw, max(1, int(round(math.sqrt(area / aspect)))))
        return t, h, w

    def _randint(self, high: int, generator: torch.Generator | None) -> int:
        return int(torch.randint(0, high, (1,), generator=generator).item())

    def _union(self, size: Grid, n: int, generator: torch.Generator | None) -> Tensor:
        """Flat bool mask, True = target, of `n` blocks of `size` at random positions."""
        gt, gh, gw = self.grid
        t, h, w = size
        mask = torch.zeros(gt, gh, gw, dtype=torch.bool)
        for _ in range(n):
            t0 = self._randint(gt - t + 1, generator)
            h0 = self._randint(gh - h + 1, generator)
            w0 = self._randint(gw - w + 1, generator)
            mask[t0 : t0 + t, h0 : h0 + h, w0 : w0 + w] = True
        return mask.flatten()

    @staticmethod
    def _shrink(size: Grid) -> Grid:
        """Next smaller block: first narrow the larger spatial side, then shorten time."""
        t, h, w = size
        if max(h, w) > 1:
            return (t, h - 1, w) if h >= w else (t, h, w - 1)
        return (max(1, t - 1), h, w)

    def _draw_sample(self, size: Grid, n: int, generator: torch.Generator | None) -> Tensor | None:
        """A union that leaves some context, or None if this block size keeps covering the clip."""
        for _ in range(MAX_POSITION_TRIES):
            union = self._union(size, n, generator)
            if not union.all():
                return union
        if size == (1, 1, 1):
            # Only possible when num_blocks >= tokens: hand one random token back to context.
            union[self._randint(union.numel(), generator)] = False
            return union
        return None

    def _sample_spec(
        self, spec: MaskSpec, batch_size: int, generator: torch.Generator | None
    ) -> list[Tensor]:
        size = self._block_size(spec, generator)
        while True:
            unions: list[Tensor] = []
            for _ in range(batch_size):
                union = self._draw_sample(size, spec.num_blocks, generator)
                if union is None:
                    break
                unions.append(union)
            if len(unions) == batch_size:
                return unions
            size = self._shrink(size)  # blocks too big to ever leave context: shrink, redo batch

    def __call__(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> list[tuple[Tensor, Tensor]]:
        """One (context_idx [B, Nc], target_idx [B, Nt]) sorted LongTensor pair per spec."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = []
        for spec in self.specs:
            unions = self._sample_spec(spec, batch_size, generator)
            ctx = [torch.nonzero(~u).flatten() for u in unions]
            tgt = [torch.nonzero(u).flatten() for u in unions]
            n_ctx = min(c.numel() for c in ctx)
            n_tgt = min(t.numel() for t in tgt)
            out.append(
                (
                    torch.stack([c[:n_ctx] for c in ctx]),
                    torch.stack([t[:n_tgt] for t in tgt]),
                )
            )
        return out
