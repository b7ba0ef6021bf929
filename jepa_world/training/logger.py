"""Run logs on rank 0: JSONL and CSV files plus TensorBoard scalars, appended on resume.

A resumed run first drops what was logged after its checkpoint (a kill between a log write and
the next checkpoint), so every step appears once and the logs agree with the weights.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from jepa_world.files import atomic_open

JSONL, CSV = "log.jsonl", "log.csv"


class RunLogger:
    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool = True,
                 resume_step: int = 0) -> None:
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self._csv_fields: list[str] | None = None
        self._tb = None
        if not enabled:
            return
        trim_logs(self.out_dir, resume_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: events after the checkpoint are hidden from the resumed run's curves
            self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"),
                                     purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": step, **scalars}
        with open(self.out_dir / JSONL, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        csv_path = self.out_dir / CSV
        if self._csv_fields is None:
            if csv_path.exists() and csv_path.stat().st_size:
                with open(csv_path) as handle:
                    self._csv_fields = next(csv.reader(handle))
            else:
                self._csv_fields = list(record)
                with atomic_open(csv_path, "w", newline="") as handle:
                    csv.writer(handle).writerow(self._csv_fields)
        with open(csv_path, "a", newline="") as handle:
            csv.DictWriter(handle, self._csv_fields, extrasaction="ignore").writerow(record)
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        """Ends the TensorBoard file and draws the curves beside it (``curves.png``)."""
        if self._tb is None:
            return
        self._tb.close()
        self._tb = None
        from jepa_world.training.curves import plot_curves

        try:
            plot_curves(self.out_dir)
        except Exception as exc:  # a picture must never cost a run its ending
            print(f"warning: {self.out_dir / 'curves.png'} not drawn: {exc}", file=sys.stderr)


def trim_logs(out_dir: Path, last_step: int) -> None:
    """Keep the log records of steps <= ``last_step`` (all of them gone for a fresh start);
    a half-written last line from a kill is dropped too. Rewritten atomically, only if needed."""
    jsonl = Path(out_dir) / JSONL
    if jsonl.exists():
        lines = jsonl.read_text().splitlines(keepends=True)
        kept = [line for line in lines
                if line.endswith("\n") and _kept(_jsonl_step(line), last_step)]
        if kept != lines:
            with atomic_open(jsonl, "w") as handle:
                handle.writelines(kept)
    table = Path(out_dir) / CSV
    if table.exists() and table.stat().st_size:
        with open(table, newline="") as handle:
            rows = list(csv.reader(handle))
        header, body = rows[0], rows[1:]
        kept_rows = [row for row in body
                     if len(row) == len(header) and _kept(_csv_step(row), last_step)]
        if kept_rows != body:
            with atomic_open(table, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(kept_rows)


def _kept(step: int | None, last_step: int) -> bool:
    return step is not None and step <= last_step


def _jsonl_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _csv_step(row: list[str]) -> int | None:
    try:
        return int(row[0])
    except (ValueError, IndexError):
        return None
