"""The skeleton every training command shares, so that resume, progress, logging windows,
checkpoint cadence, the non-finite check and the RNG hand-over behave the same in all of them.

A command supplies what is its own (the batch, the loss, what a checkpoint holds, the extra
scalars it logs); ``StepLoop`` runs the steps around it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from jepa_world.training.checkpoint import CHECKPOINT, check_same_settings, load_run_checkpoint
from jepa_world.training.logger import RunLogger
from jepa_world.training.run_dir import (
    check_resume_step,
    finished,
    refuse_changed_run,
    refuse_other_data,
)
from jepa_world.training.runtime import NonFiniteLossError, Runtime, set_rng_state

DATA_KEY = "data_fingerprint"  # where a run checkpoint keeps what it trained on


def read_resume(out_dir: Path, settings: dict[str, Any], fixed_keys: Iterable[str],
                data: Callable[[], dict[str, Any]],
                upgrade: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """The run checkpoint in ``out_dir`` (None for a fresh run), refused in one line when the
    new settings or the data (``data()``: its fingerprint now) differ from the run's, finished
    or not; ``upgrade`` fills settings added since the checkpoint was written. Only the
    settings of how a run is executed (``run_dir.EXECUTION_KEYS``) may change on resume."""
    path = out_dir / CHECKPOINT
    if not path.exists():
        return None
    state = load_run_checkpoint(path)
    if upgrade is not None:
        upgrade(state["config"])
    check_same_settings(state["config"], settings, fixed_keys, out_dir)
    step, is_finished = int(state["step"]), finished(state)
    refuse_changed_run(state["config"], settings, step, out_dir, is_finished=is_finished)
    refuse_other_data(state.get(DATA_KEY), data(), step, out_dir)
    if not is_finished:
        check_resume_step(step, settings["train"].get("stop_at_step"), out_dir)
    return state


def for_training(module: nn.Module, rt: Runtime, compile_it: bool) -> nn.Module:
    """``module`` as the loop calls it: DDP across processes, optionally compiled."""
    wrapped = module
    if rt.distributed:
        wrapped = nn.parallel.DistributedDataParallel(
            module, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
        )
    return torch.compile(wrapped) if compile_it else wrapped


def optimiser_step(rt: Runtime, optimizer: torch.optim.Optimizer, loss: Tensor,
                   parameters: Iterable[Tensor], clip_grad: float | None,
                   where: str) -> tuple[float, float]:
    """One update from ``loss``: its mean over the processes, checked finite BEFORE the weights
    move (a NaN stops training with the last checkpoint intact), then backward, clipping and
    the step. Returns (mean loss, gradient norm before clipping; NaN when not clipped)."""
    value = float(rt.all_reduce_mean(loss.detach()))
    if not math.isfinite(value):
        raise NonFiniteLossError(f"loss is {value} at {where}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = math.nan
    if clip_grad is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(list(parameters), clip_grad))
    optimizer.step()
    return value, norm


class StepLoop:
    """Iterating yields the step to train; after each, the loop counts it, logs the mean of the
    recorded scalars every ``log_every`` steps (with ``on_log``'s additions) and calls ``save``
    every ``checkpoint_every`` steps, at the first log step ``checkpoint_minutes`` after the
    last save (a slow run loses minutes, not hundreds of steps, when killed) and at the stop. A
    resumed run's RNG state is restored when iteration starts, after everything that draws
    random numbers while starting up."""

    def __init__(self, rt: Runtime, logger: RunLogger, *, start: int, total: int,
                 stop_at_step: int | None, log_every: int, checkpoint_every: int, desc: str,
                 save: Callable[[int, dict[str, float]], None],
                 checkpoint_minutes: float | None = None,
                 on_log: Callable[[int, dict[str, float]], dict[str, float]] | None = None,
                 saved_rng: dict | None = None, last: dict[str, float] | None = None,
                 postfix: tuple[str, ...] = ("loss",), progress: bool = True) -> None:
        self.rt, self.logger = rt, logger
        self.step, self.start, self.total = start, start, total
        self.stop = min(total, stop_at_step) if stop_at_step is not None else total
        self.log_every, self.checkpoint_every, self.desc = log_every, checkpoint_every, desc
        self.save, self.on_log, self.saved_rng = save, on_log, saved_rng
        self.postfix, self.progress = postfix, progress
        self.checkpoint_seconds = None if checkpoint_minutes is None else 60.0 * checkpoint_minutes
        self._saved_at = time.monotonic()
        self.last: dict[str, float] = dict(last or {})  # the scalars logged last
        self._window: list[dict[str, float]] = []

    def optimise(self, optimizer: torch.optim.Optimizer, loss: Tensor,
                 parameters: Iterable[Tensor], clip_grad: float | None) -> tuple[float, float]:
        return optimiser_step(self.rt, optimizer, loss, parameters, clip_grad,
                              f"step {self.step}")

    def record(self, scalars: dict[str, float]) -> None:
        """This step's scalars, averaged over the steps since the last log line."""
        self._window.append(scalars)

    def due(self, every: int) -> bool:
        """Whether the step just finished is one of every ``every`` (or the stop)."""
        return self.step % every == 0 or self.step == self.stop

    def __iter__(self) -> Iterator[int]:
        from tqdm import tqdm

        if self.saved_rng is not None:
            set_rng_state(self.saved_rng)
        bar = tqdm(total=self.total, initial=self.step, desc=self.desc, unit="step",
                   disable=not (self.progress and self.rt.is_main), dynamic_ncols=True, file=sys.stderr)
        try:
            while self.step < self.stop:
                yield self.step
                self.step += 1
                bar.update(1)
                if self.due(self.log_every):
                    self._log(bar)
                if self.due(self.checkpoint_every) or self._save_is_overdue():
                    self.save(self.step, self.last)
                    self._saved_at = time.monotonic()
        finally:
            bar.close()
            self.logger.close()

    def _save_is_overdue(self) -> bool:
        """Checked at log steps only; every process follows rank 0's clock (a checkpoint is
        collective)."""
        if self.checkpoint_seconds is None or not self.due(self.log_every):
            return False
        overdue = float(time.monotonic() - self._saved_at >= self.checkpoint_seconds)
        flag = torch.tensor(overdue if self.rt.is_main else 0.0, device=self.rt.device)
        return float(self.rt.all_reduce_mean(flag)) > 0

    @property
    def steps_run(self) -> int:
        return self.step - self.start

    def _log(self, bar: Any) -> None:
        window, self._window = self._window, []
        means = {k: float(np.mean([w[k] for w in window])) for k in window[0]} if window else {}
        if self.on_log is not None:
            means.update(self.on_log(self.step, means))
        self.last = means
        self.logger.log(self.step, means)
        shown = {k: f"{means[k]:.4g}" for k in self.postfix if k in means}
        bar.set_postfix(shown)


def non_finite_message(exc: NonFiniteLossError, out_dir: str | Path) -> str:
    """The one line a command prints when training stopped on a NaN or infinite loss."""
    kept = Path(out_dir) / CHECKPOINT
    note = (f"the last good checkpoint is kept in {kept}" if kept.exists()
            else "no checkpoint had been written yet")
    return f"error: {exc}; training stopped, {note}"
