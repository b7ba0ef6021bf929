"""3D rotary position embedding (RoPE) compatible with released V-JEPA 2 weights.

Per attention head the first 3 * seg dims are rotated, seg = 2 * ((head_dim // 3) // 2):
[0, seg) by the token's time index, [seg, 2 seg) by its row, [2 seg, 3 seg) by its column;
the leftover head_dim - 3 * seg dims pass through unrotated. Frequencies within a segment are
w_k = 10000 ** (-k / (seg / 2)), k = 0 .. seg/2 - 1.

THE QUIRK (keep it, the released weights were trained with it): the seg/2 angle table is
expanded to seg entries by *tiling* ([a_0 .. a_{k-1}, a_0 .. a_{k-1}], i.e. `.repeat(..., 2)`)
rather than by duplicating each entry ([a_0, a_0, a_1, a_1, ...], `repeat_interleave(2)`),
while the rotate-half partner is the *adjacent* dim ((x0, x1), (x2, x3), ...). So dim j uses
angle a_{j mod seg/2} and is mixed with its neighbour j ^ 1:
    out[2i]   = x[2i]   * cos(a_{2i mod k})   - x[2i+1] * sin(a_{2i mod k})
    out[2i+1] = x[2i+1] * cos(a_{2i+1 mod k}) + x[2i]   * sin(a_{2i+1 mod k})
The two halves of a pair turn by different angles, so this is not a true rotation (it does not
preserve norms) and relative-position invariance only holds approximately. A loader that
"fixes" it produces wrong features from the released checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor

Grid = tuple[int, int, int]


def rope_segment_dim(head_dim: int) -> int:
    """Dims per axis segment: the largest even number <= head_dim // 3."""
    return 2 * ((head_dim // 3) // 2)


def token_positions(idx: Tensor, grid: Grid, ref_grid_size: int | None = None) -> Tensor:
    """Float (t, h, w) positions [..., 3] of flat token indices `idx` in a (t, h, w) grid.

    With `ref_grid_size` (the encoder's construction grid side, img_size // patch_size) row and
    column indices are scaled by ref_grid_size / H and ref_grid_size / W, as V-JEPA 2 does, so
    another resolution spans the same position range as pretraining. At the construction
    resolution the scale is exactly 1.
    """
    _, gh, gw = (int(g) for g in grid)
    per_frame = gh * gw
    idx = idx.long()
    t = torch.div(idx, per_frame, rounding_mode="floor")
    rem = idx - t * per_frame
    h = torch.div(rem, gw, rounding_mode="floor")
    w = rem - h * gw
    t, h, w = t.float(), h.float(), w.float()
    if ref_grid_size is not None:
        h = h * (ref_grid_size / gh)
        w = w * (ref_grid_size / gw)
    return torch.stack([t, h, w], dim=-1)


def rope_tables(pos: Tensor, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin tables [..., N, 3 * seg] (float32) for positions `pos` [..., N, 3].

    Computed once per forward and shared by all blocks. Each segment's seg/2 angles are tiled
    (the quirk, see module docstring).
    """
    seg = rope_segment_dim(head_dim)
    half = seg // 2
    omega = torch.arange(half, dtype=torch.float32, device=pos.device) / (seg / 2.0)
    omega = 1.0 / (base**omega)
    cos_parts, sin_parts = [], []
    for axis in range(3):
        angles = pos[..., axis].float().unsqueeze(-1) * omega  # [..., N, seg/2]
        cos, sin = angles.cos(), angles.sin()
        cos_parts += [cos, cos]  # tiled, NOT interleaved: the released-weights quirk
        sin_parts += [sin, sin]
    return torch.cat(cos_parts, dim=-1), torch.cat(sin_parts, dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate queries or keys `x` [B, heads, N, head_dim] with tables from `rope_tables`.

    Tables may be [N, R] (shared by the batch) or [B, N, R] (per-sample positions, e.g. masked
    token subsets). The math runs in float32 and is cast back, so bf16 autocast stays accurate.
    """
    r = cos.shape[-1]
    if r == 0:
        return x
    if cos.dim() == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    xr = x[..., :r].float()
    pairs = xr.unflatten(-1, (-1, 2))
    partner = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    out = (xr * cos + partner * sin).to(x.dtype)
    if r == x.shape[-1]:
        return out
    return torch.cat([out, x[..., r:]], dim=-1)
