"""Gradient polish of a sampling search's best sequence.

A sampling search of a few hundred sequences finds the way to the goal but not its last
hundredths: near the goal the energy is a smooth bowl narrower than the search's spread. A few
Adam steps on the best sequence, through the differentiable world model, walk down that bowl;
every iterate is scored and the best sequence seen is kept, so polishing never returns a
sequence with a higher energy than the search found. Each environment's sequence gets exactly
its own gradient (the loss is the sum of per-environment energies): batched == unbatched.
"""

from __future__ import annotations

import torch

from planners.base import BestTracker, Scorer


def polish(best: BestTracker, score: Scorer, steps: int, lr: float, low: float,
           high: float) -> None:
    """``steps`` Adam steps of size ``lr`` (action units) from ``best.params`` [E,H,b,A],
    projected into the box [low, high]; ``best`` keeps the lowest energy seen."""
    if score.tail is not None:
        raise ValueError("polish_steps does not combine with a policy tail")
    params = best.params.detach().clone().unsqueeze(1).requires_grad_(True)  # [E,1,H,b,A]
    optimizer = torch.optim.Adam([params], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            energy = score(params)  # [E,1], the energy of the iterate before this step
            best.update(energy, params)
            optimizer.zero_grad(set_to_none=True)
            energy.sum().backward()
            optimizer.step()
            with torch.no_grad():
                params.clamp_(low, high)
    with torch.no_grad():
        best.update(score(params), params)
