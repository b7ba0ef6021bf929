"""Video Vision Transformer encoder (V-JEPA / V-JEPA 2 layout) and its size registry.

Module and parameter names follow the released V-JEPA checkpoints (`patch_embed.proj`,
`pos_embed`, `blocks.{i}.attn.qkv`, ...), so their weights load after stripping the
`module.backbone.` prefix. One token per tubelet x patch x patch cube, no [cls] token.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import Tensor, nn

from .pos_embed import pos_embed_for_grid, sincos_3d
from .rope import apply_rope, rope_tables, token_positions

Grid = tuple[int, int, int]

# V-JEPA sizes plus two CPU-sized presets (micro, mini) for tests and laptop runs.
VIT_SIZES: dict[str, dict] = {
    "micro": dict(embed_dim=96, depth=4, num_heads=3, mlp_ratio=4.0),
    "mini": dict(embed_dim=192, depth=6, num_heads=3, mlp_ratio=4.0),
    "tiny": dict(embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0),
    "small": dict(embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),
    "base": dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16, mlp_ratio=4.0),
    "giant": dict(embed_dim=1408, depth=40, num_heads=22, mlp_ratio=48 / 11),  # MLP 6144
}

LN_EPS = 1e-6


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and optional RoPE on q and k.

    Uses `scaled_dot_product_attention` so the fused / flash kernels are picked per device.
    `attn_mask` (bool, True = may attend, or additive float) lets a block-causal predictor reuse
    this module.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if rope is not None:
            q = apply_rope(q, *rope)
            k = apply_rope(k, *rope)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, hidden_features=round(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), rope=rope, attn_mask=attn_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_vit_weights(module: nn.Module) -> None:
    """V-JEPA init: truncated normal (std 0.02) weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Conv3d)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def rescale_blocks(blocks: nn.ModuleList) -> None:
    """Divide residual-branch output weights by sqrt(2 * layer): deep stacks start stable."""
    with torch.no_grad():
        for i, blk in enumerate(blocks):
            scale = math.sqrt(2.0 * (i + 1))
            blk.attn.proj.weight.div_(scale)
            blk.mlp.fc2.weight.div_(scale)


class PatchEmbed3D(nn.Module):
    """Conv3d over tubelet x patch x patch cubes; one token per cube."""

    def __init__(self, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: Tensor) -> tuple[Tensor, Grid]:
        x = self.proj(x)  # [B, D, t, h, w]
        grid = (x.shape[2], x.shape[3], x.shape[4])
        return x.flatten(2).transpose(1, 2), grid


@dataclass(frozen=True)
class EncoderConfig:
    """Everything that fixes an encoder's architecture: its only constructor argument.

    Checkpoints and world models store it (``to_dict``) and rebuild the encoder from it, so
    no code re-derives an architecture from a built model or from weight shapes (released
    weights, which carry no such record, are the one exception: ``checkpoints.load_vjepa``).
    """

    img_size: int = 224
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    uniform_power: bool = True
    use_rope: bool = False
    use_pos_embed: bool | None = None  # None: a sin-cos table exactly when RoPE is off
    size: str | None = None  # the registry preset it started from (a label only)

    @classmethod
    def of_size(cls, size: str, **overrides: Any) -> EncoderConfig:
        """A registry preset (``micro`` ... ``giant``) with some fields replaced."""
        if size not in VIT_SIZES:
            raise ValueError(f"unknown model size '{size}' (known: {', '.join(VIT_SIZES)})")
        return cls.from_dict({**VIT_SIZES[size], **overrides, "size": size})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """From ``to_dict`` output; a dict naming a ``size`` fills the missing fields from it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown encoder config keys {unknown}")
        size = data.get("size")
        preset = VIT_SIZES.get(size, {}) if size else {}
        if size and not preset:
            raise ValueError(f"unknown model size '{size}' (known: {', '.join(VIT_SIZES)})")
        return cls(**{**preset, **data})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def has_pos_embed(self) -> bool:
        return (not self.use_rope) if self.use_pos_embed is None else self.use_pos_embed

    def validate(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.num_frames % self.tubelet_size:
            raise ValueError(
                f"num_frames {self.num_frames} is not a multiple of tubelet_size "
                f"{self.tubelet_size}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )


class VisionTransformer(nn.Module):
    """Video ViT encoder: [B, 3, T, H, W] clip (or [B, 3, H, W] image) -> [B, N, D] tokens.

    Position information comes from a fixed 3D sin-cos table (V-JEPA) and/or 3D RoPE in every
    attention block (V-JEPA 2). `pos_embed` is a persistent buffer: it is saved and loaded with
    the weights (released checkpoints carry it) but never trained or weight-decayed.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        img_size, patch_size, embed_dim = config.img_size, config.patch_size, config.embed_dim
        num_frames, tubelet_size, depth = config.num_frames, config.tubelet_size, config.depth
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.in_chans = config.in_chans
        self.embed_dim = embed_dim
        self.num_heads = config.num_heads
        self.depth = depth
        self.use_rope = config.use_rope
        self.uniform_power = config.uniform_power
        self.grid_size: Grid = (
            num_frames // tubelet_size,
            img_size // patch_size,
            img_size // patch_size,
        )

        self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, config.in_chans, embed_dim)
        if config.has_pos_embed:
            self.register_buffer(
                "pos_embed", sincos_3d(embed_dim, self.grid_size, config.uniform_power)
            )
        else:
            self.pos_embed = None
        dpr = torch.linspace(0, config.drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                config.num_heads,
                config.mlp_ratio,
                qkv_bias=config.qkv_bias,
                drop_path=dpr[i],
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.apply(init_vit_weights)
        rescale_blocks(self.blocks)

    @property
    def num_patches(self) -> int:
        """Tokens per clip at the construction size."""
        t, h, w = self.grid_size
        return t * h * w

    def token_grid(self, x: Tensor) -> Grid:
        """(t, h, w) token grid this encoder produces for input `x` (image or clip)."""
        if x.dim() == 4:
            _, _, h, w = x.shape
            t = 1
        elif x.dim() == 5:
            _, _, frames, h, w = x.shape
            if frames % self.tubelet_size:
                raise ValueError(
                    f"clip has {frames} frames, not a multiple of tubelet_size {self.tubelet_size}"
                )
            t = frames // self.tubelet_size
        else:
            raise ValueError(f"expected [B,C,T,H,W] or [B,C,H,W] input, got shape {tuple(x.shape)}")
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"frame size {h}x{w} is not a multiple of patch_size {self.patch_size}"
            )
        return t, h // self.patch_size, w // self.patch_size

    def forward(self, x: Tensor, masks: Tensor | None = None) -> Tensor:
        """Encode a clip; with `masks` ([B, K] token indices to keep) return only those tokens.

        Frame/crop sizes other than the construction size work: the sin-cos table is resampled
        for the new grid and RoPE uses the actual grid.
        """
        grid = self.token_grid(x)
        if x.dim() == 4:  # a single image fills one tubelet by repetition (V-JEPA 2)
            x = x.unsqueeze(2).expand(-1, -1, self.tubelet_size, -1, -1)
        x = x.to(self.patch_embed.proj.weight.dtype)
        x, grid = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + pos_embed_for_grid(self.pos_embed, self.grid_size, grid)
        if masks is not None:
            masks = masks.to(device=x.device, dtype=torch.long)
            if masks.dim() != 2 or masks.shape[0] != x.shape[0]:
                raise ValueError(f"masks must be [B, K] token indices, got {tuple(masks.shape)}")
            x = torch.gather(x, 1, masks.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        rope = None
        if self.use_rope:
            idx = masks if masks is not None else torch.arange(x.shape[1], device=x.device)
            pos = token_positions(idx, grid, ref_grid_size=self.grid_size[1])
            rope = rope_tables(pos, self.embed_dim // self.num_heads)
        for blk in self.blocks:
            x = blk(x, rope=rope)
        return self.norm(x)


def vit_encoder(size: str, **overrides: Any) -> VisionTransformer:
    """An encoder of a registry preset; ``overrides`` replace fields of its config."""
    return VisionTransformer(EncoderConfig.of_size(size, **overrides))
