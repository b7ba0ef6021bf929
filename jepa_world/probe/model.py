"""V-JEPA's attentive probe: one learned query pooling frozen tokens through cross-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from torch import Tensor, nn

from jepa_world.models.vit import LN_EPS


class CrossAttention(nn.Module):
    """Multi-head attention of a few query tokens over many key/value tokens (fused SDPA)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"probe width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: Tensor, tokens: Tensor) -> Tensor:
        b, nq, d = queries.shape
        q = self.q(queries).reshape(b, nq, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(tokens).reshape(b, tokens.shape[1], 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, nq, d))


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention block: q + attn(q, norm1(x)), then q + mlp(norm2(q)).

    As in V-JEPA's attentive pooler, the frozen tokens are normalised before they become keys and
    values; the query is the residual stream.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, queries: Tensor, tokens: Tensor) -> Tensor:
        queries = queries + self.attn(queries, self.norm1(tokens))
        return queries + self.mlp(self.norm2(queries))


class AttentiveProbe(nn.Module):
    """V-JEPA's frozen-evaluation head: [B, N, D] tokens -> [B, out_dim].

    One learned query token pools the tokens through one cross-attention block; LayerNorm and a
    Linear layer read the result out. Unlike average pooling + Linear, it can pick out the
    tokens that matter (e.g. where the fingertip is), which is what frozen evaluation needs.
    """

    def __init__(self, embed_dim: int, out_dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.block = CrossAttentionBlock(embed_dim, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.head = nn.Linear(embed_dim, out_dim)
        trunc_normal_(self.query, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        pooled = self.block(self.query.expand(tokens.shape[0], -1, -1), tokens)[:, 0]
        return self.head(self.norm(pooled))
