"""Frozen encoder inputs and features: frames as the encoder saw them, tokens cached once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jepa_world.data.video import ClipSpec
from jepa_world.encoders import RELEASED_FRAME_STEP, LoadedEncoder
from jepa_world.models import VisionTransformer
from jepa_world.models.vit import LN_EPS
from jepa_world.schemas.probe import ProbeConfig
from jepa_world.training.cli import UserError
from jepa_world.training.runtime import Runtime


def extract_features(
    encoders: dict[str, VisionTransformer],
    inputs: Iterable[Tensor],
    total: int,
    rt: Runtime,
    bf16: bool = True,
    cache_dtype: torch.dtype = torch.float32,
    progress: bool = False,
    pool: tuple[int, int] | None = None,
) -> dict[str, Tensor]:
    """Tokens [N, K, D] of every encoder for every input batch, decoded once for all encoders;
    with ``pool``, each frame's layer-normed tokens averaged to that grid (as a world model's
    latent is)."""
    from tqdm import tqdm

    parts: dict[str, list[Tensor]] = {name: [] for name in encoders}
    for encoder in encoders.values():
        encoder.to(rt.device).eval()
    with tqdm(
        total=total,
        desc="features",
        unit="sample",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    ) as bar:
        for x in inputs:
            x = x.to(rt.device)
            for name, encoder in encoders.items():
                with rt.autocast(bf16):
                    tokens = encoder(x)
                if pool is not None:
                    tokens = pool_tokens(tokens, encoder, x.shape[-1], pool)
                parts[name].append(tokens.to("cpu", cache_dtype))
            bar.update(x.shape[0])
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def pool_tokens(
    tokens: Tensor, encoder: VisionTransformer, resolution: int, pool: tuple[int, int]
) -> Tensor:
    """Layer-norm tokens [B, t*gh*gw, D] and average each time slot's grid to ``pool``."""
    side = resolution // encoder.config.patch_size
    batch, count, dim = tokens.shape
    if count % (side * side) or side % pool[0] or side % pool[1]:
        raise UserError(f"pool {list(pool)} does not divide the {side}x{side} token grid")
    slots = count // (side * side)
    grid = F.layer_norm(tokens.float(), (dim,), eps=LN_EPS)
    grid = grid.reshape(batch * slots, side, side, dim).permute(0, 3, 1, 2)
    grid = F.adaptive_avg_pool2d(grid, pool)
    return grid.permute(0, 2, 3, 1).reshape(batch, slots * pool[0] * pool[1], dim)


def prepare_frames(frames: np.ndarray | Tensor, resolution: int) -> Tensor:
    """uint8 frames [..., H, W, 3] -> normalised float [..., 3, R, R] as the encoder saw them.

    Centre square, resized to the encoder's resolution, ImageNet mean / std: the normalisation
    of the pretraining clip loader (``ClipSpec``'s defaults).
    """
    x = torch.as_tensor(frames)
    lead = x.shape[:-3]
    h, w = x.shape[-3:-1]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side, :].reshape(-1, side, side, 3)
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if side != resolution:
        x = F.interpolate(
            x,
            size=(resolution, resolution),
            mode="bilinear",
            align_corners=False,
            antialias=side > resolution,
        )
    spec = ClipSpec()
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.reshape(*lead, 3, resolution, resolution)


@dataclass
class ClipShape:
    """What one sample looks like to the encoder."""

    frames: int  # 1: a single image
    frame_step: int
    resolution: int


def clip_shape(cfg: ProbeConfig, frozen: LoadedEncoder, task: str) -> ClipShape:
    encoder = frozen.encoder
    default_frames = 1 if task == "regression" else encoder.num_frames
    frames = cfg.data.frames_per_clip or default_frames
    step = cfg.data.frame_step or frozen.frame_step or RELEASED_FRAME_STEP
    res = cfg.data.resolution or encoder.img_size
    if frames > 1 and frames % encoder.tubelet_size:
        raise UserError(
            f"data.frames_per_clip={frames} is not a multiple of the encoder's tubelet size "
            f"{encoder.tubelet_size} (use 1 for single images)"
        )
    if res % encoder.patch_size:
        raise UserError(
            f"data.resolution={res} is not a multiple of the encoder's patch size "
            f"{encoder.patch_size}"
        )
    return ClipShape(frames, step, res)
