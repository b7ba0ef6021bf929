"""The schema of ``python -m jepa_world.train_ac`` (configs/train_ac.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jepa_world.training.cli import (
    UserError,
    check_device,
    check_non_negative,
    check_positive,
    check_seed,
)

INITS = ("scratch", "pretrained")
ENCODER_INITS = ("pretrained", "random")
LOSSES = ("auto", "l1", "mse")
TARGETS = ("same", "stopgrad", "ema")  # jepa_world.end_to_end.TARGETS, without importing torch
HEAD_POOLS = ("attention", "mean", "flatten")  # jepa_world.models.latent_head.HEAD_POOLS
POOL_MODES = ("mean", "stack")  # jepa_world.world_model.POOL_MODES, without importing torch
ENERGY_STEPS = ("all", "final")  # planners.energy.ENERGY_STEPS, without importing the planners
WEIGHT_DTYPES = ("float32", "float16")  # jepa_world.world_model.WEIGHT_DTYPES, without torch


@dataclass
class EncoderSource:
    checkpoint: str = "runs/pretrain"
    released: bool = False
    key: str = "target_encoder"
    init: str = "pretrained"  # pretrained | random (the checkpoint's architecture, fresh weights)
    train: bool = False  # true: end to end (encoder, latent head and predictor together)
    lr_scale: float = 1.0  # end to end: the encoder's learning rate relative to train.lr
    frozen_steps: int = 0  # end to end: the encoder stays as initialised for this many steps


@dataclass
class LatentHeadShape:
    """The latent head of an end-to-end model (jepa_world.models.latent_head)."""

    pool: str = "flatten"
    heads: int = 4
    hidden: int = 2048
    dim: int = 192
    token_dim: int = 16  # flatten pooling: channels kept per token


@dataclass
class TrajectoryData:
    paths: list[str] = field(default_factory=lambda: ["data/reach"])
    val_fraction: float = 0.1


@dataclass
class ACPredictorShape:
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    decoder_width: int = 384
    decoder_depth: int = 3
    decoder_frequencies: int = 64
    decoder_scale: float = 0.5


@dataclass
class PlanningDefaults:
    """Planner settings stored in the world model's config and applied by planners.mpc."""

    horizon: int | None = None
    energy_steps: str | None = None  # all | final; None = the planner's own default
    polish_steps: int | None = None  # cem / mppi polish_steps; None = the planner's own (0)
    polish_lr: float | None = None  # cem / mppi polish_lr; None = the planner's own
    polish_method: str | None = None  # cem / mppi polish_method; None = the planner's own
    cem_samples: int | None = None  # cem.samples; None = planners.mpc's own (128)
    cem_iterations: int | None = None  # cem.iterations; None = planners.mpc's own (4)

    def as_dict(self) -> dict[str, Any]:
        """The keys that are set."""
        return {key: value for key, value in vars(self).items() if value is not None}


@dataclass
class WorldModelChoice:
    pool: list[int] | None = field(default_factory=lambda: [2, 2])
    pool_mode: str = "mean"  # mean | stack (jepa_world.world_model.POOL_MODES)
    frameskip: int = 5
    use_proprio: bool = True
    init: str = "scratch"
    planning: PlanningDefaults = field(default_factory=PlanningDefaults)
    predictor: ACPredictorShape = field(default_factory=ACPredictorShape)
    head: LatentHeadShape = field(default_factory=LatentHeadShape)
    weights_dtype: str = "float32"  # float32 | float16: how the saved model stores its weights


@dataclass
class ACSchedule:
    steps: int = 8000
    batch_size: int = 64
    context: int = 4
    rollout_steps: int = 2
    rollout_weight: float = 1.0
    proprio_weight: float = 0.1
    decode_weight: float = 1.0
    loss: str = "auto"  # l1 | mse | auto (l1 on a frozen encoder, mse end to end)
    sigreg_weight: float = 0.09  # end to end: weight of SIGReg on the embeddings
    sigreg_directions: int = 256
    target: str = "same"  # end to end: same | stopgrad | ema (the next embeddings' encoder)
    ema_momentum: float = 0.99
    calibration_batches: int = 16  # end to end: batches that BatchNorm's statistics are
    # recomputed on before evaluating and saving
    start_lr: float = 1.0e-4
    lr: float = 6.0e-4
    final_lr: float = 1.0e-6
    warmup_steps: int = 200
    weight_decay: float = 0.04
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    clip_grad: float = 1.0
    bf16: bool = True
    compile: bool = False
    checkpoint_every: int = 500
    checkpoint_minutes: float = 5.0
    log_every: int = 25
    eval_every: int = 500
    stop_at_step: int | None = None
    tensorboard: bool = True
    encode_batch_size: int = 256


@dataclass
class TrainACConfig:
    out_dir: str = "runs/train_ac"
    seed: int = 0
    device: str = "auto"
    encoder: EncoderSource = field(default_factory=EncoderSource)
    data: TrajectoryData = field(default_factory=TrajectoryData)
    model: WorldModelChoice = field(default_factory=WorldModelChoice)
    train: ACSchedule = field(default_factory=ACSchedule)

    def prediction_loss(self) -> str:
        """l1 or mse: ``train.loss``, where auto means l1 on a frozen encoder (V-JEPA 2-AC)
        and mse end to end (LeWM)."""
        if self.train.loss != "auto":
            return self.train.loss
        return "mse" if self.encoder.train else "l1"

    def validate(self) -> None:
        train, model = self.train, self.model
        check_positive(
            train, "train.", "steps", "batch_size", "context", "checkpoint_every", "log_every",
            "checkpoint_minutes",
            "eval_every", "encode_batch_size", "stop_at_step", "lr", "clip_grad",
        )
        check_non_negative(
            train, "train.", "rollout_steps", "warmup_steps", "rollout_weight", "proprio_weight",
            "decode_weight", "sigreg_weight",
        )
        check_positive(train, "train.", "sigreg_directions", "calibration_batches")
        check_positive(self.encoder, "encoder.", "lr_scale")
        check_non_negative(self.encoder, "encoder.", "frozen_steps")
        _check_choice("train.loss", train.loss, LOSSES)
        _check_choice("train.target", train.target, TARGETS)
        _check_choice("encoder.init", self.encoder.init, ENCODER_INITS)
        _check_choice("model.head.pool", model.head.pool, HEAD_POOLS)
        _check_choice("model.weights_dtype", model.weights_dtype, WEIGHT_DTYPES)
        check_positive(model.head, "model.head.", "heads", "hidden", "dim", "token_dim")
        if not 0.0 <= train.ema_momentum < 1.0:
            raise UserError(f"train.ema_momentum must be in [0, 1), got {train.ema_momentum}")
        if not self.encoder.train and (self.encoder.init == "random" or train.target != "same"
                                       or self.encoder.frozen_steps):
            raise UserError("encoder.init=random, encoder.frozen_steps and train.target are "
                            "end-to-end settings: add "
                            "encoder.train=true (a random frozen encoder is what "
                            "jepa_world.build --random-encoder builds)")
        if len(train.betas) != 2 or not all(0.0 <= v < 1.0 for v in train.betas):
            raise UserError(f"train.betas must be two numbers in [0, 1), got {train.betas}")
        if not self.data.paths:
            raise UserError("data.paths is empty: give data.paths=[DATASET_DIR,...]")
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise UserError(f"data.val_fraction must be in [0, 1), got {self.data.val_fraction}")
        check_positive(model, "model.", "frameskip")
        if model.pool is not None and (len(model.pool) != 2 or min(model.pool) < 1):
            raise UserError(f"model.pool must be [h, w] with h, w >= 1 or null, got {model.pool}")
        if model.pool_mode not in POOL_MODES:
            raise UserError(
                f"model.pool_mode must be one of {', '.join(POOL_MODES)}, got {model.pool_mode!r}"
            )
        if model.init == "pretrained" and model.pool_mode == "stack":
            raise UserError("model.init=pretrained needs model.pool_mode=mean: the masked "
                            "predictor reads single encoder tokens, not stacked cells")
        if model.init not in INITS:
            raise UserError(f"model.init must be pretrained or scratch, got {model.init!r}")
        if not model.use_proprio and model.predictor.decoder_width:
            raise UserError("model.use_proprio=false leaves nothing for the proprio decoder: "
                            "add model.predictor.decoder_width=0")
        check_positive(model.planning, "model.planning.", "horizon", "polish_lr", "cem_samples",
                       "cem_iterations")
        check_non_negative(model.planning, "model.planning.", "polish_steps")
        if model.planning.polish_method not in (None, "adam", "gauss_newton"):
            raise UserError("model.planning.polish_method must be adam, gauss_newton or null, "
                            f"got {model.planning.polish_method!r}")
        if model.planning.energy_steps not in (None, *ENERGY_STEPS):
            raise UserError(
                "model.planning.energy_steps must be all, final or null, "
                f"got {model.planning.energy_steps!r}"
            )
        check_positive(
            model.predictor, "model.predictor.", "embed_dim", "depth", "num_heads", "mlp_ratio"
        )
        if model.init == "scratch" and model.predictor.embed_dim % model.predictor.num_heads:
            raise UserError(
                f"model.predictor.num_heads={model.predictor.num_heads} does not divide "
                f"model.predictor.embed_dim={model.predictor.embed_dim}"
            )
        check_device(self.device)
        check_seed(self.seed)


def _check_choice(name: str, value: str, known: tuple[str, ...]) -> None:
    if value not in known:
        raise UserError(f"{name} must be one of {', '.join(known)}, got {value!r}")
