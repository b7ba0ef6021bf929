"""Proprio decoder: the frame latent that a body configuration looks like.

For an embodiment whose appearance follows its proprioception (a robot arm seen by a fixed
camera), much of the next frame's latent is a function of the next proprio. A transformer
asked to produce that function from a single proprio token learns it coarsely; a small MLP on
random Fourier features of the proprio (Tancik et al., 2020) learns it several times more
precisely, because the features carry the sharp, periodic way pixels change with joint angles.

The action-conditioned predictor adds ``decode(p_next) - decode(p_now)`` to its residual on
the current latent: errors of the decoder that vary smoothly with the configuration largely
cancel in that difference, so small motions, the ones that decide whether a planner stops on
the goal, are predicted most precisely.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ProprioDecoder(nn.Module):
    def __init__(
        self,
        proprio_dim: int,
        tokens_per_frame: int,
        latent_dim: int,
        width: int = 256,
        frequencies: int = 64,
        scale: float = 1.0,
        depth: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if proprio_dim < 1 or width < 1 or frequencies < 0 or depth < 1:
            raise ValueError("proprio decoder needs proprio_dim, width, depth >= 1")
        self.tokens_per_frame, self.latent_dim = tokens_per_frame, latent_dim
        # Fixed random projection (a buffer: saved with the weights, never trained).
        gen = torch.Generator().manual_seed(seed)
        projection = torch.randn(proprio_dim, frequencies, generator=gen) * (2 * math.pi * scale)
        self.register_buffer("projection", projection)
        layers: list[nn.Module] = []
        width_in = proprio_dim + 2 * frequencies
        for _ in range(depth):
            layers += [nn.Linear(width_in, width), nn.GELU()]
            width_in = width
        layers.append(nn.Linear(width_in, tokens_per_frame * latent_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, proprio: Tensor) -> Tensor:
        """Standardised proprio [..., P] -> latent [..., K, D]."""
        phase = proprio @ self.projection.to(proprio.dtype)
        features = torch.cat([proprio, torch.sin(phase), torch.cos(phase)], dim=-1)
        out = self.mlp(features)
        return out.reshape(*proprio.shape[:-1], self.tokens_per_frame, self.latent_dim)
