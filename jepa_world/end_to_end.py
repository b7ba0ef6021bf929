"""End-to-end world-model training: encoder, latent head and predictor learn together.

A frozen encoder keeps whatever its pretraining kept, and the action-conditioned loss cannot
change it; trained end to end, the encoder is shaped by what predicting the next embedding
under an action needs. The loss is the predictor's (``ACObjective``, teacher-forced and rolled
out) on the embeddings of decoded frames, plus ``sigreg_weight`` times SIGReg on the same
embeddings, which keeps them spread as an isotropic Gaussian so that the trivial solution
(every frame the same embedding) is ruled out and an L2 energy between them means something.
Where the targets come from is a setting: the same forward pass (LeWM's way), the same pass
without gradient, or an EMA copy of encoder and head (V-JEPA's way).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from jepa_world.sigreg import SIGReg

TARGETS = ("same", "stopgrad", "ema")


class EndToEndObjective(nn.Module):
    def __init__(
        self,
        world_model: nn.Module,
        prediction: nn.Module,
        sigreg_weight: float,
        sigreg_directions: int,
        target: str = "same",
        ema_momentum: float = 0.99,
    ) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
        self.world_model = world_model
        self.prediction = prediction  # an ACObjective over world_model.predictor
        self.sigreg = SIGReg(sigreg_directions)
        self.sigreg_weight, self.target, self.ema_momentum = sigreg_weight, target, ema_momentum
        self.ema = None
        if target == "ema":  # a plain attribute: no submodule, so not in the trained parameters
            self.__dict__["ema"] = _frozen_copy(world_model)

    def forward(self, frames: Tensor, actions: Tensor, proprio: Tensor | None
                ) -> dict[str, Tensor]:
        """frames uint8 [B,T+1,H,W,3], actions [B,T,fs*A], proprio [B,T+1,P] or None."""
        z = self.world_model.encode(frames)  # [B,T+1,1,D], with gradients
        if self.target == "same":
            targets = z
        elif self.target == "stopgrad":
            targets = z.detach()
        else:
            with torch.no_grad():
                self.ema.train(self.world_model.training)
                targets = self.ema.encode(frames)
        parts = self.prediction(z, actions, proprio, targets=targets)
        flat = z.flatten(2).transpose(0, 1)  # [T+1, B, K*D]: one batch of samples per instant
        parts["sigreg"] = self.sigreg(flat)
        parts["loss"] = parts["loss"] + self.sigreg_weight * parts["sigreg"]
        with torch.no_grad():  # a collapse shows here first: the embeddings' spread
            parts["spread"] = flat.float().std(dim=1).mean()
        return parts

    @torch.no_grad()
    def update_target(self) -> None:
        """After an optimizer step: the EMA copy moves towards the trained encoder and head."""
        if self.ema is None:
            return
        online = dict(self.world_model.named_parameters())
        for name, param in self.ema.named_parameters():
            if not name.startswith("predictor."):
                param.lerp_(online[name].detach(), 1.0 - self.ema_momentum)
        online_buffers = dict(self.world_model.named_buffers())
        for name, buffer in self.ema.named_buffers():
            if buffer.is_floating_point() and name in online_buffers:
                buffer.copy_(online_buffers[name])

    def ema_state(self) -> dict[str, Tensor] | None:
        return None if self.ema is None else self.ema.state_dict()

    def load_ema_state(self, state: dict[str, Tensor] | None) -> None:
        if self.ema is not None and state is not None:
            self.ema.load_state_dict(state)


def batchnorm_state(module: nn.Module) -> dict[str, Tensor]:
    """Copies of the running statistics of every BatchNorm in ``module``."""
    return {name: buffer.clone() for name, buffer in module.named_buffers()
            if ".running_" in name or name.endswith("num_batches_tracked")}


def load_batchnorm_state(module: nn.Module, state: dict[str, Tensor]) -> None:
    buffers = dict(module.named_buffers())
    for name, value in state.items():
        buffers[name].copy_(value)


@torch.no_grad()
def calibrate_batchnorm(world_model: nn.Module, frame_batches: Iterable[Tensor]) -> None:
    """Recompute the running statistics of the latent head's BatchNorm as plain averages over
    ``frame_batches`` (uint8 [B,T,H,W,3]) with the current weights. While the encoder trains,
    the features drift faster than BatchNorm's running averages follow them, and the eval-mode
    embeddings that planning uses drift away from the train-mode ones the predictor learned
    on (measured: validation error 30x the train-mode one on gym:Reacher-v5, back to equal
    after this)."""
    norms = [m for m in world_model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = world_model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average
    world_model.train()
    for frames in frame_batches:
        world_model.encode(frames)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    world_model.train(was_training)


@contextlib.contextmanager
def calibrated(world_model: nn.Module, frame_batches: Callable[[], Iterable[Tensor]]
               ) -> Iterator[None]:
    """Within: the running statistics calibrated on ``frame_batches()`` (what evaluation
    should see); after: training's own running statistics back, bit for bit."""
    saved = batchnorm_state(world_model)
    calibrate_batchnorm(world_model, frame_batches())
    try:
        yield
    finally:
        load_batchnorm_state(world_model, saved)


def _frozen_copy(module: nn.Module) -> nn.Module:
    twin = copy.deepcopy(module)
    for param in twin.parameters():
        param.requires_grad_(False)
    return twin


def reinitialise(encoder: nn.Module) -> nn.Module:
    """The same architecture with fresh weights (the control of what pretraining buys)."""
    from jepa_world.models import VisionTransformer

    return VisionTransformer(encoder.config)


__all__ = ["EndToEndObjective", "TARGETS", "batchnorm_state", "calibrate_batchnorm", "calibrated",
           "load_batchnorm_state", "reinitialise"]
