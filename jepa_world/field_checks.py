"""Checks for the fields of configs read back from disk (a readout's or a policy's
``config.json``): an edited or damaged file is a ValueError naming the field, not a model
that plans with NaN weights or a traceback deep inside torch."""

from __future__ import annotations

import math
from typing import Any


def positive_ints(config: Any, *names: str, minimum: int = 1) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def finite_numbers(config: Any, *names: str, minimum: float | None = None) -> None:
    for name in names:
        value = getattr(config, name)
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or (minimum is not None and value < minimum)):
            bound = "" if minimum is None else f" >= {minimum:g}"
            raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
