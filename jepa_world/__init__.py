"""jepa-world: plan with a V-JEPA world model learned from video."""

from __future__ import annotations

__version__ = "0.1.0"
