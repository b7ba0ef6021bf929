"""Adam on action sequences through the differentiable world model: the gradient planner's
descent, and the polish of a sampling search's best sequence.

A sampling search of a few hundred sequences finds the way to the goal but not its last
hundredths: near the goal the energy is a smooth bowl narrower than the search's spread. A few
Adam steps on the best sequence walk down that bowl; every iterate is scored and the best
sequence seen is kept, so polishing never returns a sequence with a higher energy than the
search found. Each environment's sequence gets exactly its own gradient (the loss is the sum
of per-environment energies): batched == unbatched.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from planners.base import BestTracker, Scorer
from planners.gauss_newton import gauss_newton
from planners.threads import one_intra_op_thread


def descend(score: Scorer, params: Tensor, best: BestTracker, steps: int, lr: float,
            squash: Callable[[Tensor], Tensor] = lambda u: u,
            box: tuple[float, float] | None = None,
            history: list[Tensor] | None = None) -> None:
    """``steps`` Adam steps of size ``lr`` on the leaf ``params`` [E,R,H,b,A]: the actions
    ``squash(params)`` of every iterate, the last included, are scored and offered to ``best``
    (its energy appended to ``history`` each time); ``box`` projects ``params`` into [low,
    high] after each step. The backward passes count as the scorer's model time; on a CPU the
    steps run with one intra-op thread (``planners.threads.one_intra_op_thread``)."""
    optimizer = torch.optim.Adam([params], lr=lr)
    with one_intra_op_thread(params.device):
        with torch.enable_grad():
            for _ in range(steps):
                actions = squash(params)
                energy = score(actions)  # [E,R], the energy of the iterate before this step
                best.update(energy, actions)
                if history is not None:
                    history.append(best.energy.clone())
                optimizer.zero_grad(set_to_none=True)
                backward_started = time.perf_counter()
                energy.sum().backward()
                score.model_s += time.perf_counter() - backward_started
                optimizer.step()
                if box is not None:
                    with torch.no_grad():
                        params.clamp_(*box)
        with torch.no_grad():
            actions = squash(params)
            best.update(score(actions), actions)
            if history is not None:
                history.append(best.energy.clone())


POLISH_METHODS = ("adam", "gauss_newton")


def polish(best: BestTracker, score: Scorer, steps: int, lr: float, low: float,
           high: float, method: str = "adam") -> None:
    """``steps`` Adam steps of size ``lr`` (action units) from ``best.params`` [E,H,b,A],
    projected into the box [low, high], or ``steps`` Gauss-Newton steps
    (``method="gauss_newton"``, ``planners.gauss_newton``; ``lr`` unused); ``best`` keeps
    the lowest energy seen."""
    if score.tail is not None:
        raise ValueError("polish_steps does not combine with a policy tail")
    if method == "gauss_newton":
        gauss_newton(best, score, steps, low, high)
        return
    params = best.params.detach().clone().unsqueeze(1).requires_grad_(True)  # [E,1,H,b,A]
    descend(score, params, best, steps, lr, box=(low, high))
