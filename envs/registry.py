"""The task registry: short names accepted by every command, mapped to Gymnasium ids.

``register_task(name, entry_point)`` adds a goal-image task (a subclass of
``envs.task.GoalImageTask``) under a short name and registers it with Gymnasium, so that
``envs.collect``, ``jepa_world.pretrain`` / ``train_ac`` / ``probe`` / ``build`` and
``planners.mpc`` all accept ``--env NAME``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

DEFAULT_MAX_EPISODE_STEPS = 50  # the evaluation budget


class UnknownEnvError(ValueError):
    """An environment name that jepa-world does not provide."""


class MissingExtraError(UnknownEnvError):
    """A registered task whose optional dependencies are not installed."""


@dataclass(frozen=True)
class TaskEntry:
    name: str
    env_id: str
    entry_point: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, str] | None = None  # (module, how to install it): an optional extra


TASKS: dict[str, TaskEntry] = {}


def register_task(
    name: str,
    entry_point: str,
    env_id: str | None = None,
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
    requires: tuple[str, str] | None = None,
    **kwargs: Any,
) -> str:
    """Register a goal-image task under ``name``; returns its Gymnasium id.

    ``entry_point`` is ``"module:Class"``; ``env_id`` defaults to ``jepa_world/<name>-v0``
    with characters Gymnasium does not accept in ids replaced. ``kwargs`` are the task's
    constructor defaults. ``requires`` = (module, install command) names an optional
    dependency: without it the name is refused in one line that says how to install it.
    """
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"task names must be non-empty without spaces, got {name!r}")
    if env_id is None:
        env_id = "jepa_world/" + "".join(c if c.isalnum() else "_" for c in name) + "-v0"
    existing = TASKS.get(name)
    if existing is not None and existing.entry_point != entry_point:
        raise ValueError(f"task {name!r} is already registered as {existing.entry_point}")
    if env_id not in gym.registry:
        gym.register(
            id=env_id,
            entry_point=entry_point,
            max_episode_steps=max_episode_steps,
            kwargs=dict(kwargs),
        )
    TASKS[name] = TaskEntry(name, env_id, entry_point, dict(kwargs), requires)
    return env_id


def known_names() -> list[str]:
    return sorted(TASKS)


def resolve_env_id(name: str) -> str:
    """Map a short name ("reach", "gym:Reacher-v5") or a registered id to the Gymnasium id."""
    name = str(name)
    for entry in TASKS.values():
        if name in (entry.name, entry.env_id):
            _check_installed(entry)
            return entry.env_id
    raise UnknownEnvError(f"unknown env {name!r} (known: {', '.join(known_names())})")


def _check_installed(entry: TaskEntry) -> None:
    if entry.requires is None:
        return
    module, install = entry.requires
    if importlib.util.find_spec(module) is None:  # looks, does not import
        raise MissingExtraError(f"{entry.name} needs {module}, an optional extra: {install}")


def short_name(name_or_id: str) -> str:
    """The short name of a registered task given either form."""
    env_id = resolve_env_id(name_or_id)
    return next(entry.name for entry in TASKS.values() if entry.env_id == env_id)


def make(name: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` for a short name or full id of a registered task."""
    return gym.make(resolve_env_id(name), **kwargs)


def make_task(name: str, **kwargs: Any) -> Any:
    """The task itself (no Gymnasium wrappers): what the commands drive."""
    return gym.make(resolve_env_id(name), disable_env_checker=True, **kwargs).unwrapped
