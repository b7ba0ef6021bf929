"""Action-conditioned predictor: a block-causal transformer over time steps.

Each time step contributes ``[action token, proprio token, K frame tokens]``; a token sees every
token of its own step and of earlier steps, never a later one. The frame-token outputs of step
``t`` predict the frame tokens of step ``t+1`` (as a residual on step ``t``'s tokens: the copy of
the current frame is the natural starting point), and the proprio output predicts the next
proprioception, which feeds the following step during a rollout.

The blocks, final norm and the input/output projections have the same shapes as the V-JEPA
masked predictor's, so a pretrained predictor can initialise this one (``load_from_masked``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pos_embed import sincos_1d
from .proprio_decoder import ProprioDecoder
from .vit import LN_EPS, Block, init_vit_weights, rescale_blocks


@dataclass
class StepCache:
    """What ``ACPredictor.step`` carries between steps: every block's keys/values of the earlier
    steps, and the proprio decoder's output for the proprio it predicted last (the next step's
    input in a rollout, so it is not decoded twice)."""

    kv: list[tuple[Tensor, Tensor] | None]
    proprio: Tensor | None = None
    decoded: Tensor | None = None

    @classmethod
    def first(cls, depth: int, proprio: Tensor, decoded: Tensor) -> StepCache:
        """The cache before the first step, when the decoder's output for the starting
        proprio is already known (``proprio`` must be the very tensor then passed to step)."""
        return cls([None] * depth, proprio, decoded)



class ACPredictor(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        tokens_per_frame: int,
        action_dim: int,
        frameskip: int = 1,
        proprio_dim: int = 0,
        embed_dim: int = 96,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        decoder_width: int = 0,
        decoder_depth: int = 3,
        decoder_frequencies: int = 64,
        decoder_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.latent_dim, self.tokens_per_frame = latent_dim, tokens_per_frame
        self.action_dim, self.frameskip, self.proprio_dim = action_dim, frameskip, proprio_dim
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.frame_embed = nn.Linear(latent_dim, embed_dim)
        self.action_embed = nn.Linear(frameskip * action_dim, embed_dim)
        self.proprio_embed = nn.Linear(proprio_dim, embed_dim) if proprio_dim else None
        # One learned embedding per slot of a step: action, proprio, then each frame token.
        self.slot_embed = nn.Parameter(torch.zeros(1, 1, tokens_per_frame + 2, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.frame_head = nn.Linear(embed_dim, latent_dim)
        self.proprio_head = nn.Linear(embed_dim, proprio_dim) if proprio_dim else None
        self.apply(init_vit_weights)
        rescale_blocks(self.blocks)
        nn.init.trunc_normal_(self.slot_embed, std=0.02)
        # Inputs are standardised latents, actions in [-1, 1] and standardised proprio: their
        # embeddings start at unit scale (PyTorch's default init) so that they are not drowned
        # by the time embedding, and the residual head starts at zero, i.e. at "copy the frame".
        for embed in (self.frame_embed, self.action_embed, self.proprio_embed):
            if embed is not None:
                embed.reset_parameters()
        for head in (self.frame_head, self.proprio_head):
            if head is not None:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
        # Optional proprio decoder (built after the ViT init: it keeps PyTorch's default init).
        self.decoder = None
        if decoder_width:
            if not proprio_dim:
                raise ValueError("decoder_width needs proprioception (proprio_dim > 0)")
            self.decoder = ProprioDecoder(
                proprio_dim,
                tokens_per_frame,
                latent_dim,
                width=decoder_width,
                depth=decoder_depth,
                frequencies=decoder_frequencies,
                scale=decoder_scale,
            )

    @property
    def tokens_per_step(self) -> int:
        return self.tokens_per_frame + 2

    # ------------------------------------------------------------------ token layout
    def _step_tokens(self, z: Tensor, actions: Tensor, proprio: Tensor | None, t0: int) -> Tensor:
        """[B,T,K,D], [B,T,fs*A], [B,T,P] -> [B, T*(K+2), d] tokens of steps t0 .. t0+T-1."""
        b, steps = z.shape[:2]
        frame = self.frame_embed(z)
        action = self.action_embed(actions).unsqueeze(2)
        if self.proprio_embed is not None and proprio is not None:
            state = self.proprio_embed(proprio).unsqueeze(2)
        else:
            state = frame.new_zeros(b, steps, 1, self.embed_dim)
        x = torch.cat([action, state, frame], dim=2) + self.slot_embed
        time = torch.arange(t0, t0 + steps, device=z.device, dtype=torch.float32)
        x = x + sincos_1d(self.embed_dim, time).to(x.dtype).view(1, steps, 1, -1)
        return x.reshape(b, steps * self.tokens_per_step, self.embed_dim)

    def _heads(
        self, x: Tensor, z: Tensor, proprio: Tensor | None, decoded: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Next latents, next proprio and the decoder's latent for the next proprio (None
        without a decoder). ``decoded``: the decoder's output for ``proprio`` if known."""
        b, steps = z.shape[:2]
        x = self.norm(x).reshape(b, steps, self.tokens_per_step, self.embed_dim)
        z_next = z + self.frame_head(x[:, :, 2:])
        p_next = decoded_next = None
        if self.proprio_head is not None:
            p_next = self.proprio_head(x[:, :, 1])
            if proprio is not None:
                p_next = proprio + p_next
                if self.decoder is not None:
                    # the change of appearance that the change of proprio explains
                    decoded_next = self.decoder(p_next)
                    if decoded is None:
                        decoded = self.decoder(proprio)
                    z_next = z_next + decoded_next - decoded
        return z_next, p_next, decoded_next

    def block_causal_mask(self, steps: int, device: torch.device) -> Tensor:
        step_of = torch.arange(steps, device=device).repeat_interleave(self.tokens_per_step)
        return step_of.unsqueeze(1) >= step_of.unsqueeze(0)  # [N, N], True = may attend

    # ------------------------------------------------------------------ full sequence
    def forward(
        self, z: Tensor, actions: Tensor, proprio: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: z [B,T,K,D], actions [B,T,fs*A], proprio [B,T,P] ->
        predictions of z_{t+1} [B,T,K,D] and proprio_{t+1} [B,T,P] for every t at once."""
        x = self._step_tokens(z, actions, proprio, 0)
        mask = self.block_causal_mask(z.shape[1], z.device)
        for blk in self.blocks:
            x = blk(x, attn_mask=mask)
        z_next, p_next, _ = self._heads(x, z, proprio)
        return z_next, p_next

    # ------------------------------------------------------------------ cached stepping
    def step(
        self, z: Tensor, actions: Tensor, proprio: Tensor | None, t: int, cache: StepCache | None
    ) -> tuple[Tensor, Tensor | None, StepCache]:
        """One step with a key/value cache of the earlier steps (a rollout costs H steps, not
        H full re-encodings). z [B,K,D], actions [B,fs*A], proprio [B,P] or None."""
        x = self._step_tokens(
            z.unsqueeze(1),
            actions.unsqueeze(1),
            None if proprio is None else proprio.unsqueeze(1),
            t,
        )
        kv_cache: list[tuple[Tensor, Tensor]] = []
        for i, blk in enumerate(self.blocks):
            past = None if cache is None else cache.kv[i]
            attn_out, kv = _cached_attention(blk, blk.norm1(x), past)
            kv_cache.append(kv)
            x = x + attn_out
            x = x + blk.mlp(blk.norm2(x))
        decoded = None
        if cache is not None and cache.decoded is not None and cache.proprio is proprio:
            decoded = cache.decoded.unsqueeze(1)
        z_next, p_next, decoded_next = self._heads(
            x, z.unsqueeze(1), None if proprio is None else proprio.unsqueeze(1), decoded
        )
        p_next = None if p_next is None else p_next[:, 0]
        decoded_next = None if decoded_next is None else decoded_next[:, 0]
        return z_next[:, 0], p_next, StepCache(kv_cache, p_next, decoded_next)

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def load_from_masked(self, state: dict[str, Tensor]) -> list[str]:
        """Copy a V-JEPA masked predictor's blocks, norm and projections; returns copied keys."""
        copied = []
        mapping = {
            "predictor_embed.": "frame_embed.",
            "predictor_norm.": "norm.",
            "predictor_proj.": "frame_head.",
            "predictor_blocks.": "blocks.",
        }
        own = self.state_dict()
        for key, value in state.items():
            for src, dst in mapping.items():
                if key.startswith(src):
                    target = dst + key[len(src) :]
                    if target not in own or own[target].shape != value.shape:
                        raise ValueError(
                            f"pretrained predictor key {key} {tuple(value.shape)} does not fit "
                            f"{target} {tuple(own[target].shape) if target in own else '(absent)'}"
                        )
                    own[target].copy_(value)
                    copied.append(target)
        if not copied:
            raise ValueError("no V-JEPA predictor weights found to initialise from")
        return copied


def _cached_attention(
    blk: Block, x: Tensor, past: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Self-attention of the new step's tokens over [cached steps | new step]: within a step
    attention is full and earlier steps are all visible, so no mask is needed."""
    attn = blk.attn
    b, n, c = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    if past is not None:
        k = torch.cat([past[0], k], dim=2)
        v = torch.cat([past[1], v], dim=2)
    out = F.scaled_dot_product_attention(q, k, v)
    return attn.proj(out.transpose(1, 2).reshape(b, n, c)), (k, v)
