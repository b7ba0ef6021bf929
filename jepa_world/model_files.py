"""A world model's folder: the files ``WorldModel.save`` writes, where shipped models live, and
reading the config and weights back with one-line errors."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

WEIGHTS, CONFIG, PROVENANCE = "weights.safetensors", "config.json", "provenance.json"
READOUT_DIR = "readout"  # a state readout fitted on the model's latents (jepa_world.readout)
# task name -> folder under jepa_world/assets/ (what python -m jepa_world.build --install fills)
SHIPPED = {"reach": "reach", "push": "push", "gym:Reacher-v5": "gym-reacher-v5"}


def shipped_names() -> list[str]:
    """Task names whose world model is installed in the package."""
    assets = Path(str(resources.files("jepa_world").joinpath("assets")))
    return [name for name, folder in SHIPPED.items() if (assets / folder / CONFIG).is_file()]


def resolve_model_dir(path_or_name: str | Path) -> Path:
    """A shipped name (``reach``) or a model directory -> the directory."""
    name = str(path_or_name)
    if name in SHIPPED:
        return Path(str(resources.files("jepa_world").joinpath("assets", SHIPPED[name])))
    directory = Path(path_or_name).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(
            f"no world model at {directory} (a model directory or one of: {', '.join(SHIPPED)})"
        )
    return directory


def read_config_json(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"world model config not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"world model config {path} is invalid: {exc}") from None


def read_weights(directory: Path) -> dict[str, Any]:
    """The weights as tensors (safetensors: no code runs on load)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / WEIGHTS
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"world model weights not found: {path}") from None
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"world model weights {path} are corrupt: {exc}") from None
