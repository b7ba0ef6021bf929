"""V-JEPA masked predictor: predicts encoder features at masked token positions.

A narrow ViT. Context tokens are projected to the predictor width and tagged with their
positions; every target position gets a learned mask token (one per mask type) tagged with its
position; [context | mask tokens] runs through the blocks and only the mask-token outputs are
projected back to the encoder width. Parameter names match the released V-JEPA checkpoints.
"""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from .pos_embed import pos_embed_for_grid, sincos_3d
from .rope import rope_tables, token_positions
from .vit import LN_EPS, Block, init_vit_weights, rescale_blocks

Grid = tuple[int, int, int]


class MaskedPredictor(nn.Module):
    """Predict target-token features from context tokens (V-JEPA pretraining head)."""

    def __init__(
        self,
        embed_dim: int,
        predictor_embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 12,
        img_size: int = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        mlp_ratio: float = 4.0,
        num_mask_tokens: int = 2,
        uniform_power: bool = True,
        use_rope: bool = False,
        zero_init_mask_tokens: bool = True,
        use_pos_embed: bool | None = None,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        if img_size % patch_size or num_frames % tubelet_size:
            raise ValueError("img_size / num_frames must be multiples of patch_size / tubelet_size")
        if num_mask_tokens < 1:
            raise ValueError(f"num_mask_tokens must be >= 1, got {num_mask_tokens}")
        self.embed_dim = embed_dim
        self.predictor_embed_dim = predictor_embed_dim
        self.num_heads = num_heads
        self.use_rope = use_rope
        self.num_mask_tokens = num_mask_tokens
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.grid_size: Grid = (
            num_frames // tubelet_size,
            img_size // patch_size,
            img_size // patch_size,
        )

        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, predictor_embed_dim)) for _ in range(num_mask_tokens)
        )
        use_pos_embed = (not use_rope) if use_pos_embed is None else use_pos_embed
        if use_pos_embed:
            table = sincos_3d(predictor_embed_dim, self.grid_size, uniform_power)
            self.register_buffer("predictor_pos_embed", table)
        else:
            self.predictor_pos_embed = None
        self.predictor_blocks = nn.ModuleList(
            Block(predictor_embed_dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)
        )
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim, eps=LN_EPS)
        # out_dim: what is predicted per token (the encoder width; patch pixels for the
        # pixel-reconstruction baseline)
        self.predictor_proj = nn.Linear(predictor_embed_dim, out_dim or embed_dim)

        self.apply(init_vit_weights)
        rescale_blocks(self.predictor_blocks)
        if not zero_init_mask_tokens:
            for tok in self.mask_tokens:
                trunc_normal_(tok, std=0.02)

    def forward(
        self,
        context: Tensor,
        context_idx: Tensor,
        target_idx: Tensor,
        mask_index: int = 0,
        grid: Grid | None = None,
    ) -> Tensor:
        """Predictions [B, Nt, D] for the tokens at `target_idx` [B, Nt], in that order.

        `context` [B, Nc, D] are encoder outputs at token indices `context_idx` [B, Nc].
        `mask_index` picks the mask token (one per mask type, wrapped modulo their number).
        `grid` is the (t, h, w) token grid the indices refer to; default: construction grid.
        Full attention is permutation-equivariant, so output i belongs to target_idx[:, i]
        without any sorting.
        """
        if context.dim() != 3 or context_idx.shape != context.shape[:2]:
            raise ValueError(
                f"context {tuple(context.shape)} and context_idx {tuple(context_idx.shape)} "
                "must be [B, Nc, D] and [B, Nc]"
            )
        if target_idx.dim() != 2 or target_idx.shape[0] != context.shape[0]:
            raise ValueError(f"target_idx must be [B, Nt], got {tuple(target_idx.shape)}")
        grid = self.grid_size if grid is None else tuple(int(g) for g in grid)
        b, n_ctx, _ = context.shape
        n_tgt = target_idx.shape[1]
        context_idx = context_idx.to(device=context.device, dtype=torch.long)
        target_idx = target_idx.to(device=context.device, dtype=torch.long)

        x = self.predictor_embed(context)
        tokens = self.mask_tokens[mask_index % self.num_mask_tokens].expand(b, n_tgt, -1)
        if self.predictor_pos_embed is not None:
            table = pos_embed_for_grid(self.predictor_pos_embed, self.grid_size, grid)[0]
            x = x + table[context_idx]
            tokens = tokens + table[target_idx]
        x = torch.cat([x, tokens.to(x.dtype)], dim=1)

        rope = None
        if self.use_rope:
            pos = token_positions(
                torch.cat([context_idx, target_idx], dim=1), grid, ref_grid_size=self.grid_size[1]
            )
            rope = rope_tables(pos, self.predictor_embed_dim // self.num_heads)
        for blk in self.predictor_blocks:
            x = blk(x, rope=rope)
        return self.predictor_proj(self.predictor_norm(x[:, n_ctx:]))
