"""Run logs on rank 0: JSONL and CSV files plus TensorBoard scalars, appended on resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class RunLogger:
    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self._csv_fields: list[str] | None = None
        self._tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": step, **scalars}
        with open(self.out_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        csv_path = self.out_dir / "log.csv"
        if self._csv_fields is None:
            if csv_path.exists() and csv_path.stat().st_size:
                with open(csv_path) as handle:
                    self._csv_fields = next(csv.reader(handle))
            else:
                self._csv_fields = list(record)
                with open(csv_path, "w", newline="") as handle:
                    csv.writer(handle).writerow(self._csv_fields)
        with open(csv_path, "a", newline="") as handle:
            csv.DictWriter(handle, self._csv_fields, extrasaction="ignore").writerow(record)
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
