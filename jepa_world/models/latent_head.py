"""The latent head of an end-to-end world model: a frame's encoder tokens -> ONE vector.

A learned query attends over the tokens (attention pooling, timm's ``AttentionPoolLatent``), or
their mean, or every token reduced to a few channels and concatenated in raster order
("flatten": pooling averages away where things are, so mirror-image poses of an arm can share an
embedding); then a projector MLP with BatchNorm maps the pooled vector to the embedding that the
predictor rolls forward, SIGReg shapes and the planner's L2 energy compares. One vector per frame
makes planning cheap (3 tokens per predicted step instead of K + 2) and lets the prediction loss
decide what of the image the embedding keeps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from timm.layers import AttentionPoolLatent
from torch import Tensor, nn

HEAD_POOLS = ("attention", "mean", "flatten")


@dataclass
class LatentHeadConfig:
    pool: str = "flatten"  # flatten (tokens in raster order) | attention (a learned query) | mean
    heads: int = 4  # attention heads of the pooling; must divide the encoder width
    hidden: int = 2048  # projector width
    dim: int = 192  # embedding width
    token_dim: int = 16  # flatten: channels kept per token before concatenating

    def __post_init__(self) -> None:
        if self.pool not in HEAD_POOLS:
            raise ValueError(f"head.pool must be one of {', '.join(HEAD_POOLS)}, got {self.pool!r}")
        for name in ("heads", "hidden", "dim", "token_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"head.{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatentHeadConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown latent head keys {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LatentHead(nn.Module):
    """tokens [N, tokens, width] -> embeddings [N, dim]."""

    def __init__(self, width: int, config: LatentHeadConfig, tokens: int) -> None:
        super().__init__()
        self.config = config
        self.pool: nn.Module | None = None
        pooled = width
        if config.pool == "attention":
            if width % config.heads:
                raise ValueError(f"head.heads={config.heads} does not divide the encoder width "
                                 f"{width}")
            self.pool = AttentionPoolLatent(width, num_heads=config.heads,
                                            norm_layer=nn.LayerNorm)
        elif config.pool == "flatten":
            self.pool = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, config.token_dim),
                                      nn.Flatten(1))
            pooled = tokens * config.token_dim
        self.projector = nn.Sequential(
            nn.Linear(pooled, config.hidden),
            nn.BatchNorm1d(config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, config.dim),
        )

    def forward(self, tokens: Tensor) -> Tensor:
        pooled = tokens.mean(dim=1) if self.pool is None else self.pool(tokens)
        return self.projector(pooled)


__all__ = ["HEAD_POOLS", "LatentHead", "LatentHeadConfig"]
