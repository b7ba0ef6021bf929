"""A run's logged scalars as one PNG beside its logs (``curves.png``), so that a run folder can
be judged without starting TensorBoard; rewritten whenever the run's logger closes.

    python -m jepa_world.training.curves RUN_DIR     # redraw it for any run folder
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

CURVES = "curves.png"
MAX_PANELS = 16


def read_scalars(log_file: Path) -> dict[str, tuple[list[int], list[float]]]:
    """name -> (steps, values) of every finite scalar in a log.jsonl."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for line in log_file.read_text().splitlines():
        try:
            record = json.loads(line)
            step = int(record.pop("step"))
        except (ValueError, KeyError, TypeError):
            continue  # a half-written last line
        for name, value in record.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                steps, values = series.setdefault(name, ([], []))
                steps.append(step)
                values.append(float(value))
    return series


def plot_curves(run_dir: str | Path) -> Path | None:
    """Draw every scalar of ``run_dir/log.jsonl`` in its own panel (losses on a log scale);
    None when nothing is logged yet."""
    run_dir = Path(run_dir)
    log_file = run_dir / "log.jsonl"
    series = read_scalars(log_file) if log_file.exists() else {}
    if not series:
        return None
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, a lighter import

    from jepa_world.files import atomic_path

    names = list(series)[:MAX_PANELS]
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.4 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        steps, values = series[name]
        axis.plot(steps, values, linewidth=1.2)
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
        if ("loss" in name or name in ("teacher", "rollout", "copy")) and min(values) > 0:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(names):]:
        axis.axis("off")
    figure.suptitle(f"{run_dir.name}: logged scalars against the step", fontsize=10)
    figure.tight_layout()
    target = run_dir / CURVES
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m jepa_world.training.curves RUN_DIR", file=sys.stderr)
        return 2
    path = plot_curves(argv[0])
    if path is None:
        print(f"error: no logged scalars in {Path(argv[0]) / 'log.jsonl'}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
