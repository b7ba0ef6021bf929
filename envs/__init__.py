"""Goal-image MuJoCo tasks for jepa-world, registered on import.

``import envs`` registers the built-in tasks; every command accepts their short names:

=================  ========================  ===========================================
short name         Gymnasium id              task
=================  ========================  ===========================================
``reach``          ``jepa_world/Reach-v0``   damped two-link arm (envs/reach.py)
``push``           ``jepa_world/Push-v0``    Push-T: slide a T-shaped block (envs/push.py)
``gym:Reacher-v5`` ``jepa_world/Reacher-v5`` Gymnasium's torque-driven Reacher from pixels
``gym:Pusher-v5``  ``jepa_world/Pusher-v5``  Gymnasium's Pusher from pixels
=================  ========================  ===========================================

With the optional extra ``jepa-world[swm]``, stable-worldmodel's benchmark environments too:
``swm:PushT-v1`` (``jepa_world/SwmPushT-v1``) and ``swm:ReacherDMControl-v0``
(``jepa_world/SwmReacherDMControl-v0``), see envs/swm_tasks.py.

``envs.register_task(name, "module:Class")`` adds a user's own task; modules named in the
``JEPA_WORLD_TASKS`` environment variable (comma-separated) are imported here, so that the
command-line tools know the tasks they register.
"""

from __future__ import annotations

import importlib
import os

from envs._gl import RenderingUnavailableError, configure_headless_gl
from envs.registry import (
    DEFAULT_MAX_EPISODE_STEPS,
    TASKS,
    MissingExtraError,
    UnknownEnvError,
    known_names,
    make,
    make_task,
    register_task,
    resolve_env_id,
    short_name,
)

configure_headless_gl()

register_task("reach", "envs.reach:ReachEnv", env_id="jepa_world/Reach-v0")
register_task("push", "envs.push:PushEnv", env_id="jepa_world/Push-v0")
register_task(
    "gym:Reacher-v5", "envs.gymnasium_tasks:ReacherTask", env_id="jepa_world/Reacher-v5"
)
register_task("gym:Pusher-v5", "envs.gymnasium_tasks:PusherTask", env_id="jepa_world/Pusher-v5")
# stable-worldmodel's environments (optional extra jepa-world[swm], imported when first built)
SWM_EXTRA = ("stable_worldmodel", 'pip install "jepa-world[swm]"')
register_task("swm:PushT-v1", "envs.swm_tasks:SwmPushT", env_id="jepa_world/SwmPushT-v1",
              requires=SWM_EXTRA)
register_task("swm:ReacherDMControl-v0", "envs.swm_tasks:SwmReacher",
              env_id="jepa_world/SwmReacherDMControl-v0", requires=SWM_EXTRA)


def _import_user_tasks() -> None:
    for module in filter(None, (m.strip() for m in os.environ.get("JEPA_WORLD_TASKS", "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"JEPA_WORLD_TASKS names {module!r}, which cannot be imported: {exc}") from exc


_import_user_tasks()

__all__ = [
    "DEFAULT_MAX_EPISODE_STEPS",
    "TASKS",
    "MissingExtraError",
    "RenderingUnavailableError",
    "UnknownEnvError",
    "known_names",
    "make",
    "make_task",
    "register_task",
    "resolve_env_id",
    "short_name",
]
