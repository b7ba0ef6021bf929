"""Encoder, masked predictor and position encodings (V-JEPA / V-JEPA 2 layouts)."""

from .pos_embed import interpolate_pos_embed, pos_embed_for_grid, sincos_3d, sincos_split
from .predictor import MaskedPredictor
from .rope import apply_rope, rope_segment_dim, rope_tables, token_positions
from .vit import VIT_SIZES, Attention, Block, EncoderConfig, VisionTransformer, vit_encoder

__all__ = [
    "VIT_SIZES",
    "Attention",
    "Block",
    "EncoderConfig",
    "MaskedPredictor",
    "VisionTransformer",
    "apply_rope",
    "interpolate_pos_embed",
    "pos_embed_for_grid",
    "rope_segment_dim",
    "rope_tables",
    "sincos_3d",
    "sincos_split",
    "token_positions",
    "vit_encoder",
]
