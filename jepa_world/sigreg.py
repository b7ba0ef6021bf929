"""SIGReg: a regulariser that pulls a batch of embeddings towards an isotropic Gaussian.

Trained end to end, an encoder and a predictor can agree on a constant embedding and predict it
perfectly; SIGReg (LeJEPA, Balestriero & LeCun 2025; LeWM uses it for world models) rules that
out. The batch is projected onto random unit directions; each 1-D projection's empirical
characteristic function is compared with the standard normal's by the Epps-Pulley statistic

    EP = N * integral over t of |phi_N(t) - exp(-t^2 / 2)|^2 * exp(-t^2 / 2) dt,

with phi_N(t) = mean_n exp(i t x_n), integrated by the trapezoid rule on knots in [0, t_max]
(the integrand is even in t, hence the factor 2). SIGReg is the mean over directions. It is
zero in expectation for Gaussian data only up to a finite-sample bias of about one unit, grows
linearly with N for a collapsed or shifted batch, and its cost is N x D x M.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def epps_pulley(projections: Tensor, knots: Tensor) -> Tensor:
    """projections [..., N, M] (N samples of M 1-D variables) -> statistic [..., M]."""
    n = projections.shape[-2]
    x_t = projections.unsqueeze(-1) * knots  # [..., N, M, T]
    real = torch.cos(x_t).mean(dim=-3) - torch.exp(-0.5 * knots**2)
    imag = torch.sin(x_t).mean(dim=-3)
    integrand = (real**2 + imag**2) * torch.exp(-0.5 * knots**2)
    return 2.0 * n * torch.trapezoid(integrand, knots, dim=-1)


class SIGReg(nn.Module):
    """embeddings [..., N, D] -> scalar: the Epps-Pulley statistic of N samples projected onto
    ``directions`` random unit vectors, averaged over directions and leading dimensions (one
    batch per time step, as each step's samples are the independent ones).

    Directions are drawn anew at every call from ``generator`` (or torch's global RNG), so
    that no fixed set of projections can be matched while the others stay non-Gaussian."""

    def __init__(self, directions: int = 256, knots: int = 17, t_max: float = 3.0) -> None:
        super().__init__()
        if directions < 1 or knots < 2 or not t_max > 0:
            raise ValueError(f"SIGReg needs directions >= 1, knots >= 2 and t_max > 0, got "
                             f"{directions}, {knots}, {t_max}")
        self.directions = directions
        self.register_buffer("knots", torch.linspace(0.0, t_max, knots), persistent=False)

    def forward(self, embeddings: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if embeddings.dim() < 2 or embeddings.shape[-2] < 2:
            raise ValueError(f"SIGReg needs embeddings [..., N >= 2, D], got "
                             f"{tuple(embeddings.shape)}")
        x = embeddings.float()
        d = x.shape[-1]
        source = generator.device if generator is not None else x.device
        directions = torch.randn(d, self.directions, generator=generator, device=source)
        directions = (directions / directions.norm(dim=0, keepdim=True)).to(x.device)
        return epps_pulley(x @ directions, self.knots.to(x.device)).mean()


__all__ = ["SIGReg", "epps_pulley"]
