"""Fixed 3D sin-cos position embeddings, laid out as V-JEPA lays them out.

Released V-JEPA checkpoints carry their `pos_embed` tensor, but our own models build it from
scratch, so the layout must match exactly: for every token (t, h, w) in row-major order the
vector is [emb_t | emb_h | emb_w] cut to the model width, and each 1-D part is
[sin(p * w_0), ..., sin(p * w_{k-1}), cos(p * w_0), ..., cos(p * w_{k-1})] with
w_i = 10000 ** (-i / k).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

Grid = tuple[int, int, int]


def sincos_split(embed_dim: int, uniform_power: bool = True) -> tuple[int, int, int]:
    """Dims given to (t, h, w) before the concatenation is cut to `embed_dim`.

    `uniform_power=True` (every released V-JEPA config) gives each axis ceil(D/6)*2 dims so the
    three axes carry equal energy; the sum may exceed D and the tail of the w part is cut.
    Otherwise time gets D/2 and each spatial axis D/4.
    """
    if embed_dim < 4:
        raise ValueError(f"embed_dim must be >= 4 for a 3D sin-cos embedding, got {embed_dim}")
    if uniform_power:
        d = int(math.ceil(embed_dim / 6) * 2)
        return d, d, d
    return embed_dim // 2, embed_dim // 4, embed_dim // 4


def sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """[len(pos), dim] table [sin | cos] of positions `pos` (float64 for exact reproduction)."""
    half = dim // 2
    omega = torch.arange(half, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    omega = 1.0 / (10000.0**omega)
    angles = pos.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_3d(embed_dim: int, grid: Grid, uniform_power: bool = True) -> Tensor:
    """[1, t*h*w, embed_dim] float32 fixed embedding for a (t, h, w) token grid.

    Tokens are ordered t-major then h then w, the order the Conv3d patch embedding flattens to.
    """
    gt, gh, gw = (int(g) for g in grid)
    dt, dh, dw = sincos_split(embed_dim, uniform_power)
    if dt % 2 or dh % 2 or dw % 2:
        raise ValueError(
            f"embed_dim {embed_dim} splits into odd parts {(dt, dh, dw)}; without uniform_power "
            "it must be a multiple of 8"
        )
    t = torch.arange(gt, dtype=torch.float64)
    h = torch.arange(gh, dtype=torch.float64)
    w = torch.arange(gw, dtype=torch.float64)
    tt, hh, ww = torch.meshgrid(t, h, w, indexing="ij")
    emb = torch.cat([sincos_1d(dt, tt), sincos_1d(dh, hh), sincos_1d(dw, ww)], dim=1)
    return emb[:, :embed_dim].to(torch.float32).unsqueeze(0)


def interpolate_pos_embed(pos_embed: Tensor, src_grid: Grid, dst_grid: Grid) -> Tensor:
    """Resample a [1, N, D] embedding from one (t, h, w) grid to another, trilinearly.

    This is how V-JEPA serves clips or crops other than the pretraining size; it keeps a
    loaded (possibly non-analytic) embedding rather than recomputing one. Same grid: returned
    unchanged.
    """
    src = tuple(int(g) for g in src_grid)
    dst = tuple(int(g) for g in dst_grid)
    _, n, d = pos_embed.shape
    if n != src[0] * src[1] * src[2]:
        raise ValueError(f"pos_embed has {n} tokens but grid {src} has {src[0] * src[1] * src[2]}")
    if src == dst:
        return pos_embed
    vol = pos_embed.reshape(1, *src, d).permute(0, 4, 1, 2, 3)
    vol = F.interpolate(vol.float(), size=dst, mode="trilinear", align_corners=False)
    return vol.permute(0, 2, 3, 4, 1).reshape(1, -1, d).to(pos_embed.dtype)


def pos_embed_for_grid(pos_embed: Tensor, src_grid: Grid, dst_grid: Grid) -> Tensor:
    """Embedding to add for an input whose token grid is `dst_grid`.

    A clip with fewer time steps is the start of a clip, so it takes the first time slices
    (which equals recomputing the fixed table for the shorter grid, and is what a frame encoded
    on its own saw as the first tubelet during pretraining). Anything else still differing
    (longer clips, other resolutions) is interpolated trilinearly as V-JEPA does.
    """
    src = tuple(int(g) for g in src_grid)
    dst = tuple(int(g) for g in dst_grid)
    if src == dst:
        return pos_embed
    if dst[0] < src[0]:
        per_t = src[1] * src[2]
        pos_embed = pos_embed[:, : dst[0] * per_t]
        src = (dst[0], src[1], src[2])
    return interpolate_pos_embed(pos_embed, src, dst)
