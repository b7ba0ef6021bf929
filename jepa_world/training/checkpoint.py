"""Atomic checkpoints: a run killed at any moment leaves the last complete one intact."""

from __future__ import annotations

import contextlib
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from jepa_world.files import save_torch_atomic
from jepa_world.training.cli import UserError

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torch_atomic(state, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: a checkpoint can never run code on this machine."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(
            f"refusing to load {path}: not a plain-tensor checkpoint ({first})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise UserError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__})"
        ) from None


def load_run_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training run's own checkpoint (to resume): it must hold its config and step."""
    state = load_checkpoint(path)
    config = state.get("config") if isinstance(state, dict) else None
    train = config.get("train") if isinstance(config, dict) else None
    if not isinstance(train, dict) or not isinstance(state.get("step"), int):
        raise UserError(f"checkpoint {path} lacks its run's config or step (not written by this "
                        "command?): use another out_dir")
    return state


@contextlib.contextmanager
def checkpoint_must_fit(path: Path) -> Iterator[None]:
    """Loading a checkpoint's tensors into the run: a missing entry or a mis-shaped tensor
    (an edited or foreign file) is one line, not a traceback."""
    try:
        yield
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"checkpoint {path} does not fit this run ({type(exc).__name__}: "
                        f"{first}); use another out_dir") from None


def check_same_settings(saved: dict[str, Any], wanted: dict[str, Any], keys, out_dir: Path) -> None:
    """Refuse to resume a run whose fixed settings (dotted ``keys``) the new config changes."""
    for key in keys:
        if _select(saved, key) != _select(wanted, key):
            raise UserError(
                f"{out_dir} holds a run with a different {key}; use another out_dir "
                "or the same settings to resume"
            )


def _select(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
