"""V-JEPA pretraining objective: predict the EMA target encoder's features of masked regions.

``objective="pixels"`` is the generative baseline at equal architecture: the same encoder,
masks and predictor, the predictor reading out the masked patches' pixels (normalised per
patch, as VideoMAE does) under an MSE loss, with no target encoder.

Kept apart from the training loop so that other code (probes, the world model, tests) can build
the same encoder/predictor pair from a run's config.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepa_world.models import EncoderConfig, MaskedPredictor, VisionTransformer


def encoder_config(model_cfg: Any, data_cfg: Any) -> EncoderConfig:
    """The encoder a pretraining run's ``model`` and ``data`` settings describe."""
    return EncoderConfig.of_size(
        model_cfg["size"],
        img_size=int(data_cfg["resolution"]),
        patch_size=int(model_cfg["patch_size"]),
        num_frames=int(data_cfg["frames_per_clip"]),
        tubelet_size=int(model_cfg["tubelet_size"]),
        uniform_power=bool(model_cfg["uniform_power"]),
        use_rope=bool(model_cfg["use_rope"]),
        drop_path_rate=float(model_cfg.get("drop_path_rate", 0.0)),
    )


def build_encoder(model_cfg: Any, data_cfg: Any) -> VisionTransformer:
    return VisionTransformer(encoder_config(model_cfg, data_cfg))


OBJECTIVES = ("features", "pixels")


def patch_values(model_cfg: Any) -> int:
    """Pixel values of one token: a tubelet of patches of 3 channels."""
    patch, tubelet = int(model_cfg["patch_size"]), int(model_cfg["tubelet_size"])
    return 3 * tubelet * patch * patch


def build_predictor(
    model_cfg: Any, data_cfg: Any, embed_dim: int, num_masks: int, objective: str = "features"
) -> MaskedPredictor:
    pred = model_cfg["predictor"]
    return MaskedPredictor(
        embed_dim=embed_dim,
        predictor_embed_dim=int(pred["embed_dim"]),
        depth=int(pred["depth"]),
        num_heads=int(pred["num_heads"]),
        img_size=int(data_cfg["resolution"]),
        patch_size=int(model_cfg["patch_size"]),
        num_frames=int(data_cfg["frames_per_clip"]),
        tubelet_size=int(model_cfg["tubelet_size"]),
        num_mask_tokens=num_masks,
        uniform_power=bool(model_cfg["uniform_power"]),
        use_rope=bool(model_cfg["use_rope"]),
        out_dim=patch_values(model_cfg) if objective == "pixels" else None,
    )


class VJEPA(nn.Module):
    """Context encoder + predictor (the trained part); the target encoder is an EMA copy."""

    def __init__(
        self,
        encoder: VisionTransformer,
        predictor: MaskedPredictor,
        objective: str = "features",
        variance_weight: float = 0.0,
        covariance_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r} (known: {', '.join(OBJECTIVES)})")
        self.encoder = encoder
        self.predictor = predictor
        self.objective = objective
        self.variance_weight = variance_weight
        self.covariance_weight = covariance_weight
        self.last_regularizer: Tensor = torch.zeros(())

    def forward(self, video: Tensor, masks: list[tuple[Tensor, Tensor]], targets: Tensor) -> Tensor:
        """Loss on the masked tokens, averaged over mask types: L1 to layer-normed target
        features (V-JEPA), or MSE to per-patch normalised pixels (``pixel_targets``)."""
        loss_fn = F.l1_loss if self.objective == "features" else F.mse_loss
        regularize = self.variance_weight > 0 or self.covariance_weight > 0
        losses, penalties = [], []
        for mask_index, (context_idx, target_idx) in enumerate(masks):
            context = self.encoder(video, masks=context_idx)
            if regularize:
                variance, covariance = variance_covariance(context.reshape(-1, context.shape[-1]))
                penalties.append(
                    self.variance_weight * variance + self.covariance_weight * covariance
                )
            prediction = self.predictor(context, context_idx, target_idx, mask_index=mask_index)
            target = torch.gather(
                targets, 1, target_idx.unsqueeze(-1).expand(-1, -1, targets.shape[-1])
            )
            losses.append(loss_fn(prediction.float(), target.float()))
        loss = torch.stack(losses).mean()
        if not regularize:
            return loss
        penalty = torch.stack(penalties).mean()
        self.last_regularizer = penalty.detach()  # for the log: no graph kept past the step
        return loss + penalty


def variance_covariance(features: Tensor, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """VICReg's variance and covariance terms of [N, D] features (the context tokens of a
    batch): a hinge that keeps every dimension's standard deviation across tokens at 1 or more,
    and the squared off-diagonal covariances per dimension. The feature loss alone lets the
    encoder drop content that is hard to predict, such as a small pushed object; these terms
    make it spread its features over everything that varies between tokens."""
    x = features.float()
    x = x - x.mean(dim=0)
    n, d = x.shape
    std = (x.var(dim=0) + eps).sqrt()
    variance = F.relu(1.0 - std).mean()
    cov = (x.T @ x) / max(n - 1, 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    covariance = off_diagonal.pow(2).sum() / d
    return variance, covariance


def make_target_encoder(encoder: VisionTransformer) -> VisionTransformer:
    target = copy.deepcopy(encoder)
    for param in target.parameters():
        param.requires_grad_(False)
    return target


@torch.no_grad()
def target_features(target_encoder: VisionTransformer, video: Tensor) -> Tensor:
    """Layer norm without affine of the target encoder's output on the full clip."""
    features = target_encoder(video)
    return F.layer_norm(features, (features.shape[-1],))


@torch.no_grad()
def pixel_targets(video: Tensor, patch_size: int, tubelet_size: int, eps: float = 1e-6) -> Tensor:
    """[B, 3, T, H, W] clips -> [B, N, tubelet * patch * patch * 3] per-token pixels in the
    encoder's token order (time, row, column), each token normalised to zero mean and unit
    variance (VideoMAE's target: it stops the loss from rewarding blurry average colours)."""
    b, c, t, h, w = video.shape
    p, u = patch_size, tubelet_size
    x = video.float().reshape(b, c, t // u, u, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, (t // u) * (h // p) * (w // p), -1)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / (var + eps).sqrt()


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)
