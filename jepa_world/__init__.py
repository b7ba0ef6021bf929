"""jepa-world: plan with a V-JEPA world model learned from video."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from jepa_world.world_model import WorldModel


def __getattr__(name: str):
    # Imported on first use so that `import jepa_world.data` stays light for loader workers.
    if name == "WorldModel":
        from jepa_world.world_model import WorldModel

        return WorldModel
    raise AttributeError(f"module 'jepa_world' has no attribute {name!r}")


__all__ = ["WorldModel"]
