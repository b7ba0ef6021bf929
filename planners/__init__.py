"""Planners that search action sequences in a world model's representation space.

Every planner has the same call::

    result = planners.cem.plan(world_model, z_now, z_goal, proprio=None, init_mean=None,
                               generator=gens, horizon=5, samples=300, ...)
    result.actions  # [E,H,frameskip,A] in the action box
    result.energy   # [E] predicted energy of those actions

``get_planner(name)`` returns ``(plan, SettingsClass)`` for "cem", "mppi" and "gradient";
``shift_plan`` turns the last plan into the warm start of the next replanning step.
"""

from __future__ import annotations

from collections.abc import Callable

from planners import cem, gradient, mppi
from planners.base import PlannerSettings, PlanResult, WorldModelProtocol, shift_plan
from planners.cem import CEMSettings
from planners.gradient import GradientSettings
from planners.mppi import MPPISettings

PLANNERS: dict[str, tuple[Callable[..., PlanResult], type[PlannerSettings]]] = {
    "cem": (cem.plan, CEMSettings),
    "mppi": (mppi.plan, MPPISettings),
    "gradient": (gradient.plan, GradientSettings),
}


class UnknownPlannerError(ValueError):
    """A planner name that is not in ``PLANNERS``."""


def get_planner(name: str) -> tuple[Callable[..., PlanResult], type[PlannerSettings]]:
    """The plan function and its settings dataclass for a planner name."""
    if name not in PLANNERS:
        raise UnknownPlannerError(
            f"unknown planner {name!r} (known: {', '.join(sorted(PLANNERS))})"
        )
    return PLANNERS[name]


__all__ = [
    "CEMSettings",
    "GradientSettings",
    "MPPISettings",
    "PLANNERS",
    "PlanResult",
    "PlannerSettings",
    "UnknownPlannerError",
    "WorldModelProtocol",
    "get_planner",
    "shift_plan",
]
