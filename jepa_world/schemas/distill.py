"""The schema of ``python -m jepa_world.distill`` (configs/distill.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jepa_world.rl.amortized import ImaginationSettings
from jepa_world.training.cli import UserError, check_non_negative, check_positive, check_seed


@dataclass
class ImaginationStage(ImaginationSettings):
    """Before the DAgger rounds: the student minimises the planner's energy inside the world
    model (``jepa_world.rl.amortized``) from the frames of recorded datasets."""

    data: list[str] = field(default_factory=list)  # recorded datasets of the task; [] = skip
    episodes: int | None = None  # encode at most this many recorded episodes


@dataclass
class StudentShape:
    hidden: int = 256
    depth: int = 2


@dataclass
class StudentTraining:
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1.0e-3
    weight_decay: float = 1.0e-4


@dataclass
class DistillConfig:
    env: str = "reach"
    world_model: str | None = None
    out_dir: str = "runs/distill/reach"
    seed: int = 0
    goal: str | None = None
    budget: int = 50
    num_envs: int = 8
    rounds: int = 5
    episodes_per_round: int = 32
    label_every: int | None = None
    planner: str = "cem"
    planner_settings: dict[str, Any] = field(default_factory=dict)
    student: StudentShape = field(default_factory=StudentShape)
    train: StudentTraining = field(default_factory=StudentTraining)
    imagination: ImaginationStage = field(default_factory=ImaginationStage)
    install: bool = False  # copy the result next to the shipped world model (assets/<task>/student)
    progress: bool = True

    def validate(self) -> None:
        for name in ("budget", "num_envs", "episodes_per_round", "label_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{name} must be a positive integer, got {value}")
        if self.rounds < (0 if self.imagination.data else 1):
            raise UserError(f"rounds must be >= 1 (>= 0 with imagination.data), got {self.rounds}")
        try:
            self.imagination.validate()
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if self.imagination.episodes is not None and self.imagination.episodes < 1:
            raise UserError(f"imagination.episodes must be a positive integer, "
                            f"got {self.imagination.episodes}")
        for name in ("hidden", "depth"):
            if getattr(self.student, name) < 1:
                raise UserError(f"student.{name} must be a positive integer, "
                                f"got {getattr(self.student, name)}")
        for name in ("epochs", "batch_size"):
            if getattr(self.train, name) < 1:
                raise UserError(f"train.{name} must be a positive integer, "
                                f"got {getattr(self.train, name)}")
        check_positive(self.train, "train.", "lr")
        check_non_negative(self.train, "train.", "weight_decay")
        check_seed(self.seed)
