"""The ``out_dir`` of a training command (pretrain, train_ac): one run in it at a time, and a
finished run that is never silently rewritten.

A rerun of a finished run with the same settings changes nothing; with other settings it is
refused, because its files (the world model's provenance, ``config.yaml``) would then describe
a training that never happened.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jepa_world.files import FolderInUseError, exclusive, remove_stale_tmp
from jepa_world.training.cli import UserError

# Settings that say how a run is executed or reported, not what it trains.
EXECUTION_KEYS = (
    "out_dir", "device", "progress", "train.stop_at_step", "train.tensorboard",
    "train.log_every", "train.eval_every", "train.checkpoint_every", "train.compile",
    "train.checkpoint_minutes",
    "train.encode_batch_size", "train.num_workers",
)


def prepare_out_dir(out_dir: str | Path, is_main: bool) -> Path:
    """``out_dir`` created (on rank 0), or one line when it cannot be."""
    path = Path(out_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"out_dir {path} is a file, not a folder")
    if is_main:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create out_dir {path}: {exc.strerror or exc}") from None
    return path


@contextlib.contextmanager
def hold_out_dir(out_dir: Path, is_main: bool, what: str) -> Iterator[None]:
    """Rank 0 holds ``out_dir``'s lock for the run; a second run on it stops with one line."""
    if not is_main:
        yield
        return
    try:
        with exclusive(out_dir, what):
            remove_stale_tmp(out_dir)
            yield
    except FolderInUseError as exc:
        raise UserError(f"{exc}: wait for it or use another out_dir") from None


SETUP_FILES = {".lock", "config.yaml"}  # what a run writes before its input is checked


@contextlib.contextmanager
def own_out_dir(out_dir: str | Path, is_main: bool, what: str) -> Iterator[Path]:
    """``out_dir`` prepared and held for the run; a folder this run created is removed again
    when bad input stops the run before it wrote anything but its lock and config.yaml, so a
    mistyped path leaves nothing behind."""
    path = Path(out_dir).expanduser().absolute()
    first_created = None if path.exists() or not is_main else path
    while first_created is not None and not first_created.parent.exists():
        first_created = first_created.parent
    path = prepare_out_dir(path, is_main)
    try:
        with hold_out_dir(path, is_main, what):
            yield path
    except UserError:
        if first_created is not None and {p.name for p in path.iterdir()} <= SETUP_FILES:
            for name in SETUP_FILES:
                (path / name).unlink(missing_ok=True)
            folder = path
            while folder != first_created.parent and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        raise


def changed_settings(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ, leaving out ``EXECUTION_KEYS``."""
    flat_saved, flat_wanted = _flatten(_plain(saved)), _flatten(_plain(wanted))
    keys = sorted(set(flat_saved) | set(flat_wanted))
    return [
        k for k in keys
        if flat_saved.get(k) != flat_wanted.get(k)
        and not any(k == e or k.startswith(e + ".") for e in EXECUTION_KEYS)
    ]


def finished(resume: dict[str, Any]) -> bool:
    """Whether a run's checkpoint is its last: it reached the steps it was started with."""
    return int(resume["step"]) >= int(resume["config"]["train"]["steps"])


def refuse_changed_run(saved: dict[str, Any], wanted: dict[str, Any], step: int,
                       out_dir: Path, *, is_finished: bool) -> None:
    """A run continues (or stays finished) only under the settings it was started with: a
    changed learning rate, step count or loss would make its record describe another run."""
    changed = changed_settings(saved, wanted)
    if changed:
        shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        what = (f"a finished run ({step} steps)" if is_finished
                else f"an unfinished run (at step {step})")
        raise UserError(
            f"{out_dir} holds {what} trained with other settings ({shown}); nothing was "
            "changed: use another out_dir, or the same settings to resume"
        )


def refuse_other_data(saved: dict[str, Any] | None, now: dict[str, Any], step: int,
                      out_dir: Path) -> None:
    """A run continues (or stays finished) only on the data it trained on; runs from before
    fingerprints were recorded are not checked."""
    if saved is None or saved.get("digest") == now.get("digest"):
        return
    from jepa_world.data.fingerprint import describe

    raise UserError(
        f"{out_dir} holds a run ({step} steps) trained on other data ({describe(saved)} then, "
        f"{describe(now)} now under the same paths); nothing was changed: use another out_dir"
    )


def check_resume_step(done: int, stop_at_step: int | None, out_dir: Path) -> None:
    """An unfinished run resumed at ``done`` must be allowed to train past it (``train.steps``
    itself cannot change on resume: ``refuse_changed_run``)."""
    if stop_at_step is not None and stop_at_step <= done:
        raise UserError(f"train.stop_at_step={stop_at_step} is not after the checkpoint's step "
                        f"{done} in {out_dir}: nothing to train")


def _plain(config: Any) -> Any:
    """Tuples as lists, paths as strings: what a saved config holds after a round trip."""
    return json.loads(json.dumps(config, default=str))


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix.rstrip("."): config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat
