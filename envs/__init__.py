"""MuJoCo Gymnasium tasks for jepa-world, registered on import.

``import envs`` registers ``jepa_world/Reach-v0``; ``envs.make("reach")`` accepts the short names
that the command-line tools use.
"""

from __future__ import annotations

import gymnasium as gym

from envs._gl import RenderingUnavailableError, configure_headless_gl

configure_headless_gl()

ENV_IDS: dict[str, str] = {"reach": "jepa_world/Reach-v0"}
DEFAULT_MAX_EPISODE_STEPS = 50  # the evaluation budget

if "jepa_world/Reach-v0" not in gym.registry:
    gym.register(
        id="jepa_world/Reach-v0",
        entry_point="envs.reach:ReachEnv",
        max_episode_steps=DEFAULT_MAX_EPISODE_STEPS,
    )


class UnknownEnvError(ValueError):
    """An environment name that jepa-world does not provide."""


def resolve_env_id(name: str) -> str:
    """Map a short name ("reach") or a full id to the registered Gymnasium id."""
    if name in ENV_IDS:
        return ENV_IDS[name]
    if name in ENV_IDS.values():
        return name
    known = ", ".join(sorted(ENV_IDS))
    raise UnknownEnvError(f"unknown env {name!r} (known: {known})")


def make(name: str, **kwargs) -> gym.Env:
    """``gymnasium.make`` for a short name or full id of a jepa-world task."""
    return gym.make(resolve_env_id(name), **kwargs)


__all__ = ["ENV_IDS", "RenderingUnavailableError", "UnknownEnvError", "make", "resolve_env_id"]
