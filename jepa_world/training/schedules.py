"""Learning-rate, weight-decay and EMA schedules as pure functions of the step (resume-safe)."""

from __future__ import annotations

import math


def warmup_cosine(
    step: int, total: int, warmup: int, start: float, peak: float, final: float
) -> float:
    """Linear warmup start -> peak over ``warmup`` steps, then cosine peak -> final."""
    if step < warmup:
        return start + (peak - start) * step / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress))


def cosine(step: int, total: int, start: float, final: float) -> float:
    """Cosine from start to final (V-JEPA's weight-decay schedule rises 0.04 -> 0.4)."""
    progress = min(1.0, step / max(1, total))
    return final + 0.5 * (start - final) * (1.0 + math.cos(math.pi * progress))


def linear(step: int, total: int, start: float, final: float) -> float:
    """Linear ramp (V-JEPA's EMA momentum 0.998 -> 1.0)."""
    progress = min(1.0, step / max(1, total))
    return start + (final - start) * progress
