"""The schema of ``python -m jepa_world.probe`` (configs/probe.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepa_world.training.cli import (
    UserError,
    check_device,
    check_non_negative,
    check_positive,
    check_seed,
)

TASKS = ("regression", "classification")
CACHE_DTYPES = ("float32", "float16", "bfloat16")
RESERVED_NAMES = ("pretrained", "random")


def as_list(value: Any) -> list[str]:
    """A path (or target name) or a list of them, as a list of strings."""
    if value is None:
        return []
    if isinstance(value, str | Path):
        return [str(value)]
    return [str(v) for v in value]


@dataclass
class ProbeInputs:
    train: Any = "data/reach"  # one dataset folder or a list (normalised to a list)
    val: Any = None
    val_fraction: float = 0.2
    split_seed: int = 0
    frame_stride: int = 1
    index_train: str | None = None
    index_val: str | None = None
    frames_per_clip: int | None = None
    frame_step: int | None = None
    resolution: int | None = None
    num_workers: int = 2


@dataclass
class ProbeTraining:
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1.0e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    num_heads: int | None = None
    mlp_ratio: float = 4.0
    cpu_threads: int | None = 1
    encode_batch_size: int = 64
    cache_dtype: str = "float32"


@dataclass
class LowShot:
    fractions: Any = None  # fractions of the labelled training episodes, e.g. [0.05, 0.1, 0.5]
    splits: int = 3  # random subsets per fraction below 1


@dataclass
class ProbeConfig:
    checkpoint: str = "runs/pretrain"
    released: bool = False
    key: str = "target_encoder"
    task: str = "regression"
    data: ProbeInputs = field(default_factory=ProbeInputs)
    targets: Any = None  # a name or a list of names (normalised to a list), null = defaults
    probe: ProbeTraining = field(default_factory=ProbeTraining)
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    compare_random: bool = True
    compare: Any = None  # {name: checkpoint}: more pretrain runs probed in the same table
    low_shot: LowShot = field(default_factory=LowShot)
    pool: Any = None  # [h, w]: average-pool each frame's tokens to this grid (a world model's
    # latent grid) before the probe; null = every token
    progress: bool = True
    json: str | None = None

    def validate(self) -> None:
        data, probe = self.data, self.probe
        data.train, data.val = as_list(data.train), as_list(data.val)
        self.targets = None if self.targets is None else as_list(self.targets)
        if self.task not in TASKS:
            raise UserError(f"unknown task '{self.task}' (known: {', '.join(TASKS)})")
        if self.task == "classification" and not data.index_train:
            raise UserError("task=classification needs data.index_train=INDEX_FILE ('path label')")
        if self.task == "regression" and not data.train:
            raise UserError("task=regression needs data.train=DATASET_DIR (from envs.collect)")
        if data.frame_stride < 1:
            raise UserError(f"data.frame_stride must be >= 1, got {data.frame_stride}")
        for name in ("frames_per_clip", "frame_step", "resolution"):
            value = getattr(data, name)
            if value is not None and value < 1:
                raise UserError(
                    "data.frames_per_clip, data.frame_step and data.resolution must be >= 1"
                )
        if not 0.0 < data.val_fraction < 1.0:
            raise UserError(f"data.val_fraction must be in (0, 1), got {data.val_fraction}")
        check_non_negative(data, "data.", "num_workers")
        check_positive(
            probe, "probe.", "steps", "batch_size", "num_heads", "encode_batch_size", "lr",
            "mlp_ratio", "cpu_threads",
        )
        if probe.cache_dtype not in CACHE_DTYPES:
            raise UserError(
                f"unknown probe.cache_dtype '{probe.cache_dtype}' (known: {', '.join(CACHE_DTYPES)})"
            )
        check_device(self.device)
        check_seed(self.seed)
        check_seed(data.split_seed, "data.split_seed")
        self._validate_comparisons()
        if self.pool is not None:
            self.pool = [int(v) for v in self.pool]
            if len(self.pool) != 2 or min(self.pool) < 1:
                raise UserError(f"pool must be [h, w] with h, w >= 1 or null, got {self.pool}")

    def _validate_comparisons(self) -> None:
        low = self.low_shot
        if low.fractions is not None:
            values = low.fractions if isinstance(low.fractions, list | tuple) else [low.fractions]
            try:
                fractions = sorted({float(v) for v in values})
            except (TypeError, ValueError):
                raise UserError(f"low_shot.fractions must be numbers, got {values}") from None
            bad = [f for f in fractions if not 0.0 < f <= 1.0]
            if bad or not fractions:
                raise UserError(
                    f"low_shot.fractions must lie in (0, 1], got {bad[0] if bad else 'none'}"
                )
            low.fractions = fractions
        check_positive(low, "low_shot.", "splits")
        compare = dict(self.compare or {})
        for name, path in compare.items():
            if name in RESERVED_NAMES or not str(name).isidentifier():
                raise UserError(
                    f"compare.{name}: name an encoder with a word other than "
                    f"{' / '.join(RESERVED_NAMES)}"
                )
            if not path:
                raise UserError(f"compare.{name} needs a checkpoint path")
        self.compare = {str(k): str(v) for k, v in compare.items()}
