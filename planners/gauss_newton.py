"""Gauss-Newton polish of a sampling search's best sequence: the last hundredths of the way
in a few batched passes instead of many small gradient passes.

The Adam polish (``planners.polish``) takes about 20 steps, each a forward and backward pass
of one sequence, and on a CPU such a pass costs its operation count, not its arithmetic. The
l2 energy is a sum of squares of predicted-minus-goal latents over few searched dimensions
(horizon x action dims: 10 for Reacher-v5), so its Jacobian costs one batched forward pass of
that many nudged copies of the sequence, and a damped Gauss-Newton (Levenberg-Marquardt) step
jumps toward the bottom of the local bowl. Several dampings are tried in one more batched
pass; every sequence scored is offered to the search's ``BestTracker`` with its full energy
(a state readout's term included), so the polish never returns a sequence with a higher
energy than the search found. Each environment solves its own system: batched == unbatched.
"""

from __future__ import annotations

import torch

from planners.base import BestTracker, Scorer

# Levenberg-Marquardt dampings, relative to each dimension's curvature (diag of J^T J): from
# nearly the full Gauss-Newton step to a short, gradient-like one; all are scored each step.
DAMPINGS = (1e-3, 1e-2, 1e-1, 1.0)
NUDGE = 1e-2  # forward-difference step in action units (the box is [-1, 1])


def gauss_newton(best: BestTracker, score: Scorer, steps: int, low: float, high: float,
                 nudge: float = NUDGE) -> None:
    """``steps`` damped Gauss-Newton steps from ``best.params`` [E,H,b,A] inside the box
    [low, high]; the Jacobian by forward differences of ``nudge`` action units (each nudge
    points away from the nearer bound, so that every probe stays in the box)."""
    num_envs, shape = best.params.shape[0], best.params.shape[1:]
    dims = best.params[0].numel()
    eye = torch.eye(dims, device=best.params.device)
    for _ in range(steps):
        x = best.params.reshape(num_envs, dims)
        nudges = torch.where(x + nudge > high, -nudge, nudge)  # [E,d]
        probes = torch.cat([x.unsqueeze(1), x.unsqueeze(1) + eye * nudges.unsqueeze(1)], 1)
        probes = probes.reshape(num_envs, dims + 1, *shape)
        energy, residual = score.residuals(probes)
        best.update(energy, probes)
        moves = damped_steps(residual.double(), nudges.double())  # [E,L,d]
        candidates = (x.unsqueeze(1) + moves.float()).clamp(low, high)
        candidates = candidates.reshape(num_envs, len(DAMPINGS), *shape)
        best.update(score(candidates), candidates)


def damped_steps(residual: torch.Tensor, nudges: torch.Tensor) -> torch.Tensor:
    """residual [E,1+d,M] (at x, then at x + nudge_i e_i), nudges [E,d] -> one
    Levenberg-Marquardt step [E,L,d] per damping of ``DAMPINGS``."""
    base = residual[:, 0]
    jac_t = (residual[:, 1:] - base.unsqueeze(1)) / nudges.unsqueeze(-1)  # [E,d,M] = J^T
    curvature = jac_t @ jac_t.transpose(1, 2)  # [E,d,d] = J^T J
    gradient = jac_t @ base.unsqueeze(-1)  # [E,d,1] = J^T r
    diag = curvature.diagonal(dim1=1, dim2=2)
    # a dimension the energy does not feel gets a small floor instead of a singular system
    floor = 1e-9 * diag.mean(dim=1, keepdim=True).clamp_min(1e-30)
    damping = torch.diag_embed(diag.clamp_min(0) + floor)
    return torch.stack([-torch.linalg.solve(curvature + lam * damping, gradient)[..., 0]
                        for lam in DAMPINGS], dim=1)
