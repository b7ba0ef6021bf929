"""One loader for every kind of encoder source the commands accept.

``load_encoder(source)`` takes a ``jepa_world.pretrain`` run (its out_dir or checkpoint.pt),
a world model (a directory or a shipped task name such as ``reach``) or, with
``released=True``, Meta's V-JEPA / V-JEPA 2 / Hugging Face weights. The encoder comes back
frozen, in eval mode, with its ``EncoderConfig`` attached (``encoder.config``), so callers
store or copy the architecture from the config instead of re-deriving it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepa_world.models import EncoderConfig, VisionTransformer
from jepa_world.training.checkpoint import CHECKPOINT, load_checkpoint
from jepa_world.training.cli import UserError

RELEASED_FRAME_STEP = 4  # V-JEPA's clips: 16 frames taken every 4th frame


@dataclass
class LoadedEncoder:
    """A frozen encoder and what is known about where it came from."""

    encoder: VisionTransformer
    kind: str  # pretrain | world_model | released
    source: str  # the file, directory or shipped name it was read from
    frame_step: int | None  # the pretraining clips' frame step, where known
    predictor_state: dict[str, Any] = field(default_factory=dict)  # the masked predictor's
    provenance: dict[str, Any] = field(default_factory=dict)  # step, loss, pretrain config...

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    @property
    def name(self) -> str:
        """The preset it was built from, or the kind of source."""
        return self.config.size or self.kind


def load_encoder(
    source: str | Path, *, released: bool = False, key: str = "target_encoder"
) -> LoadedEncoder:
    """Load the encoder of ``source`` (see the module docstring); bad sources raise a one-line
    ``UserError``. ``key`` picks the encoder of a pretrain checkpoint (``target_encoder``, the
    EMA one V-JEPA evaluates, or ``encoder``)."""
    name = str(source)
    if released:
        return _released(Path(name).expanduser())
    if is_world_model(name):
        return _world_model(name)
    return _pretrain_run(Path(name).expanduser(), key)


def is_world_model(name: str) -> bool:
    from jepa_world.world_model import CONFIG, SHIPPED, WEIGHTS

    path = Path(name).expanduser()
    return name in SHIPPED or ((path / CONFIG).is_file() and (path / WEIGHTS).is_file())


def fresh_like(encoder: VisionTransformer, seed: int) -> VisionTransformer:
    """An encoder of the same architecture with fresh (seeded) weights: the random baseline."""
    import torch

    torch.manual_seed(seed)
    return freeze(VisionTransformer(encoder.config))


def freeze(encoder: VisionTransformer) -> VisionTransformer:
    for param in encoder.parameters():
        param.requires_grad_(False)
    return encoder.eval()


def _released(path: Path) -> LoadedEncoder:
    from jepa_world.checkpoints import load_vjepa

    encoder, predictor = load_vjepa(path)
    return LoadedEncoder(
        freeze(encoder),
        "released",
        str(path),
        RELEASED_FRAME_STEP,
        {} if predictor is None else predictor.state_dict(),
        {"released": str(path)},
    )


def _world_model(name: str) -> LoadedEncoder:
    from jepa_world.world_model import WorldModel

    try:
        model = WorldModel.load(name)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise UserError(f"cannot load the encoder of world model {name!r}: {exc}") from None
    origin = dict(model.provenance(name).get("encoder_source", {}))
    return LoadedEncoder(
        freeze(model.encoder),
        "world_model",
        name,
        _frame_step(origin.get("pretrain_config") or {}),
        {},
        {"world_model": name, **origin},
    )


def _pretrain_run(path: Path, key: str) -> LoadedEncoder:
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.is_file():
        raise UserError(
            f"pretrained encoder not found: {file} (run `python -m jepa_world.pretrain` first, "
            "give a world model or shipped name, or released=true for Meta's weights)"
        )
    state = load_checkpoint(file)
    if not isinstance(state, dict) or "config" not in state or key not in state:
        raise UserError(
            f"{file} is not a jepa_world.pretrain checkpoint with '{key}' "
            "(for released V-JEPA weights add released=true)"
        )
    run_config = state["config"]
    try:
        config = _pretrain_encoder_config(state)
        encoder = VisionTransformer(config)
        encoder.load_state_dict(state[key])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"cannot rebuild the encoder of {file}: {first}") from None
    return LoadedEncoder(
        freeze(encoder),
        "pretrain",
        str(file),
        _frame_step(run_config),
        dict(state.get("predictor", {})),
        {
            "checkpoint": str(file),
            "step": state.get("step"),
            "loss": state.get("loss"),
            "pretrain_config": run_config,
        },
    )


def _pretrain_encoder_config(state: dict[str, Any]) -> EncoderConfig:
    """The stored config; checkpoints written before it was stored carry the run's settings."""
    if "encoder_config" in state:
        return EncoderConfig.from_dict(dict(state["encoder_config"]))
    from jepa_world.vjepa import encoder_config

    return encoder_config(state["config"]["model"], state["config"]["data"])


def _frame_step(pretrain_config: dict[str, Any]) -> int | None:
    """The frame step of a pretraining run's clips, if its config says."""
    step = pretrain_config.get("data", {}).get("frame_step")
    return None if step is None else int(step)
