"""The schema of ``python -m jepa_world.pretrain`` (configs/pretrain.yaml and its groups)."""

from __future__ import annotations

from dataclasses import dataclass, field

from jepa_world.models import VIT_SIZES
from jepa_world.training.cli import (
    UserError,
    check_device,
    check_non_negative,
    check_positive,
    check_seed,
)
from jepa_world.vjepa import OBJECTIVES


@dataclass
class MaskedPredictorShape:
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 4


@dataclass
class EncoderChoice:
    """configs/model/<size>.yaml: the encoder preset and the pretraining predictor."""

    size: str = "micro"
    patch_size: int = 8
    tubelet_size: int = 2
    uniform_power: bool = True
    use_rope: bool = False
    drop_path_rate: float = 0.0
    predictor: MaskedPredictorShape = field(default_factory=MaskedPredictorShape)


@dataclass
class CorpusRecording:
    """How the default corpus (data=task) is recorded when it is missing."""

    out: str = "data/reach"
    env: str = "reach"
    episodes: int = 200
    steps: int = 100
    seed: int = 0


@dataclass
class VideoData:
    """configs/data/<name>.yaml: which videos, and how clips are cut from them."""

    paths: list[str] = field(default_factory=list)
    weights: list[float] | None = None
    frames_per_clip: int = 8
    frame_step: int = 2
    resolution: int = 64
    crop_scale: list[float] = field(default_factory=lambda: [0.7, 1.0])
    crop_aspect: list[float] = field(default_factory=lambda: [0.75, 1.35])
    hflip: bool = False
    record: CorpusRecording | None = None


@dataclass
class MaskType:
    """One entry of configs/mask/<name>.yaml (see jepa_world.masks.MaskSpec)."""

    num_blocks: int = 8
    spatial_scale: list[float] = field(default_factory=lambda: [0.15, 0.15])
    temporal_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    aspect_ratio: list[float] = field(default_factory=lambda: [0.75, 1.5])


@dataclass
class PretrainSchedule:
    steps: int = 2000
    batch_size: int = 16
    num_workers: int = 2
    start_lr: float = 2.0e-4
    lr: float = 6.25e-4
    final_lr: float = 1.0e-6
    warmup_steps: int = 100
    weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    ema: list[float] = field(default_factory=lambda: [0.998, 1.0])
    # VICReg's variance / covariance terms on the context encoder's tokens (0 = off, V-JEPA)
    variance_weight: float = 0.0
    covariance_weight: float = 0.0
    clip_grad: float = 10.0
    bf16: bool = True
    compile: bool = False
    checkpoint_every: int = 200
    checkpoint_minutes: float = 5.0
    log_every: int = 10
    stop_at_step: int | None = None
    tensorboard: bool = True


@dataclass
class PretrainConfig:
    env: str = "reach"
    out_dir: str = "runs/pretrain"
    seed: int = 0
    device: str = "auto"
    objective: str = "features"  # features (V-JEPA) | pixels (masked pixel reconstruction)
    model: EncoderChoice = field(default_factory=EncoderChoice)
    data: VideoData = field(default_factory=VideoData)
    mask: list[MaskType] = field(default_factory=list)
    train: PretrainSchedule = field(default_factory=PretrainSchedule)

    def validate(self) -> None:
        train, data, model = self.train, self.data, self.model
        # steps=0 saves the initialised model untrained: the random-encoder control
        check_positive(train, "train.", "batch_size", "checkpoint_every", "log_every",
                       "checkpoint_minutes")
        check_positive(train, "train.", "stop_at_step", "lr", "clip_grad")
        check_non_negative(train, "train.", "steps", "num_workers", "warmup_steps")
        check_non_negative(train, "train.", "variance_weight", "covariance_weight")
        for name in ("betas", "ema"):
            pair = getattr(train, name)
            if len(pair) != 2 or not all(0.0 <= v <= 1.0 for v in pair):
                raise UserError(f"train.{name} must be two numbers in [0, 1], got {pair}")
        if not data.paths:
            raise UserError("data.paths is empty: give data.paths=[DIR_OR_INDEX,...]")
        if data.weights is not None and len(data.weights) != len(data.paths):
            raise UserError(
                f"data.weights has {len(data.weights)} entries for {len(data.paths)} paths"
            )
        check_positive(data, "data.", "frames_per_clip", "frame_step", "resolution")
        for name in ("crop_scale", "crop_aspect"):
            pair = getattr(data, name)
            if len(pair) != 2 or not 0 < pair[0] <= pair[1]:
                raise UserError(f"data.{name} must be [min, max] with 0 < min <= max, got {pair}")
        if model.size not in VIT_SIZES:
            raise UserError(f"unknown model size {model.size!r} (known: {', '.join(VIT_SIZES)})")
        if not self.mask:
            raise UserError("mask is empty: give at least one mask type (mask=multiblock)")
        if self.objective not in OBJECTIVES:
            raise UserError(
                f"unknown objective '{self.objective}' (known: {', '.join(OBJECTIVES)})"
            )
        check_device(self.device)
        check_seed(self.seed)
        if data.record is not None:
            check_seed(data.record.seed, "data.record.seed")
