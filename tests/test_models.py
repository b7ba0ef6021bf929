"""Encoder, predictor, sin-cos and RoPE position encodings: shapes, layouts and the RoPE quirk."""

from __future__ import annotations

import math

import pytest
import torch

from jepa_world.models import (
    VIT_SIZES,
    MaskedPredictor,
    VisionTransformer,
    apply_rope,
    interpolate_pos_embed,
    pos_embed_for_grid,
    rope_segment_dim,
    rope_tables,
    sincos_3d,
    sincos_split,
    token_positions,
    vit_encoder,
)


def small_encoder(**kw) -> VisionTransformer:
    cfg = dict(img_size=32, patch_size=8, num_frames=4, tubelet_size=2)
    cfg.update(kw)
    return vit_encoder("micro", **cfg).eval()


def small_predictor(**kw) -> MaskedPredictor:
    cfg = dict(
        embed_dim=96,
        predictor_embed_dim=48,
        depth=2,
        num_heads=4,
        img_size=32,
        patch_size=8,
        num_frames=4,
        tubelet_size=2,
    )
    cfg.update(kw)
    return MaskedPredictor(**cfg)


def expected_params(embed_dim, depth, mlp_ratio, patch=16, tubelet=2, in_chans=3) -> int:
    d, m = embed_dim, int(embed_dim * mlp_ratio)
    block = (3 * d * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d) + 4 * d
    return d * in_chans * tubelet * patch * patch + d + depth * block + 2 * d


# ---------------------------------------------------------------- registry / encoder


def test_registry_entries():
    want = {
        "tiny": (192, 12, 3),
        "small": (384, 12, 6),
        "base": (768, 12, 12),
        "large": (1024, 24, 16),
        "huge": (1280, 32, 16),
        "giant": (1408, 40, 22),
        "micro": (96, 4, 3),
        "mini": (192, 6, 3),
    }
    for name, (d, depth, heads) in want.items():
        cfg = VIT_SIZES[name]
        assert (cfg["embed_dim"], cfg["depth"], cfg["num_heads"]) == (d, depth, heads)
        assert set(cfg) == {"embed_dim", "depth", "num_heads", "mlp_ratio"}
    assert int(1408 * VIT_SIZES["giant"]["mlp_ratio"]) == 6144


@pytest.mark.parametrize("size", list(VIT_SIZES))
def test_full_size_param_count_on_meta(size):
    """Every registry size at 224px / 16 frames, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        model = vit_encoder(size)
    cfg = VIT_SIZES[size]
    n = sum(p.numel() for p in model.parameters())
    assert n == expected_params(cfg["embed_dim"], cfg["depth"], cfg["mlp_ratio"])
    assert model.pos_embed.shape == (1, 8 * 14 * 14, cfg["embed_dim"])
    ballpark = {
        "tiny": 5.5e6,
        "small": 22e6,
        "base": 86e6,
        "large": 303e6,
        "huge": 631e6,
        "giant": 1.01e9,
    }
    if size in ballpark:
        assert abs(n / ballpark[size] - 1) < 0.05, n
    if size == "giant":
        assert model.blocks[0].mlp.fc1.weight.shape == (6144, 1408)


@pytest.mark.parametrize("size", list(VIT_SIZES))
def test_forward_every_size(size):
    """Real forward at 32px / 2 frames; deep sizes capped at 2 blocks (block shapes are equal)."""
    depth = min(VIT_SIZES[size]["depth"], 2)
    for use_rope in (False, True):
        torch.manual_seed(0)
        model = vit_encoder(size, img_size=32, num_frames=2, depth=depth, use_rope=use_rope)
        out = model(torch.randn(1, 3, 2, 32, 32))
        assert out.shape == (1, 4, VIT_SIZES[size]["embed_dim"])
        assert torch.isfinite(out).all()


def test_unknown_size():
    with pytest.raises(ValueError, match=r"unknown model size 'colossal' \(known: .*giant"):
        vit_encoder("colossal")


def test_encoder_attributes_and_state_dict_layout():
    model = small_encoder()
    assert model.grid_size == (2, 4, 4)
    assert (model.embed_dim, model.num_heads, model.patch_size) == (96, 3, 8)
    assert (model.tubelet_size, model.img_size, model.num_frames) == (2, 32, 4)
    sd = model.state_dict()
    assert sd["patch_embed.proj.weight"].shape == (96, 3, 2, 8, 8)
    assert sd["patch_embed.proj.bias"].shape == (96,)
    assert sd["pos_embed"].shape == (1, 32, 96)
    assert sd["blocks.0.attn.qkv.weight"].shape == (288, 96)
    assert sd["blocks.0.attn.qkv.bias"].shape == (288,)
    assert sd["blocks.3.attn.proj.weight"].shape == (96, 96)
    assert sd["blocks.0.mlp.fc1.weight"].shape == (384, 96)
    assert sd["blocks.0.mlp.fc2.weight"].shape == (96, 384)
    for key in ("blocks.0.norm1.weight", "blocks.0.norm2.bias", "norm.weight", "norm.bias"):
        assert key in sd
    assert all(not name.startswith("pos_embed") for name, _ in model.named_parameters())
    assert model.norm.eps == 1e-6 and model.blocks[0].norm1.eps == 1e-6
    # V-JEPA 2 style: RoPE and no absolute table unless asked for.
    rope_model = small_encoder(use_rope=True)
    assert rope_model.pos_embed is None and "pos_embed" not in rope_model.state_dict()
    assert "pos_embed" in small_encoder(use_rope=True, use_pos_embed=True).state_dict()


def test_image_input_is_repeated_into_a_tubelet():
    torch.manual_seed(0)
    for use_rope in (False, True):
        model = small_encoder(num_frames=2, use_rope=use_rope)
        img = torch.randn(2, 3, 32, 32)
        clip = img.unsqueeze(2).repeat(1, 1, 2, 1, 1)
        with torch.no_grad():
            torch.testing.assert_close(model(img), model(clip))
        # A 4-frame encoder given one image uses the first time slice of its table.
        model4 = small_encoder(num_frames=4, use_rope=use_rope)
        with torch.no_grad():
            out = model4(img)
        assert out.shape == (2, 16, 96)


def test_masks_keep_path():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 32, 32)
    for use_rope in (False, True):
        model = small_encoder(use_rope=use_rope)
        with torch.no_grad():
            full = model(x)
            all_idx = torch.arange(32).expand(2, -1)
            torch.testing.assert_close(model(x, all_idx), full)
            keep = torch.stack([torch.randperm(32)[:10].sort().values for _ in range(2)])
            part = model(x, keep)
        assert part.shape == (2, 10, 96)
        # Batch rows are independent: row 0 alone gives the same tokens.
        with torch.no_grad():
            torch.testing.assert_close(model(x[:1], keep[:1]), part[:1], atol=1e-5, rtol=1e-5)


def test_other_clip_and_crop_sizes():
    torch.manual_seed(0)
    for use_rope in (False, True):
        model = small_encoder(use_rope=use_rope)
        with torch.no_grad():
            assert model(torch.randn(1, 3, 8, 48, 64)).shape == (1, 4 * 6 * 8, 96)
            assert model(torch.randn(1, 3, 2, 32, 32)).shape == (1, 16, 96)
    with pytest.raises(ValueError, match="tubelet"):
        small_encoder()(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="patch_size"):
        small_encoder()(torch.randn(1, 3, 4, 30, 32))


def test_bf16_autocast_and_backward():
    torch.manual_seed(0)
    for use_rope in (False, True):
        enc = small_encoder(use_rope=use_rope).train()
        pred = small_predictor(use_rope=use_rope)
        x = torch.randn(2, 3, 4, 32, 32)
        ctx = torch.arange(0, 32, 2).expand(2, -1)
        tgt = torch.arange(1, 32, 2).expand(2, -1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = pred(enc(x, ctx), ctx, tgt, mask_index=1)
        assert out.shape == (2, 16, 96) and torch.isfinite(out.float()).all()
        out.float().abs().mean().backward()
        assert enc.patch_embed.proj.weight.grad is not None


def test_init_is_vjepa_like():
    torch.manual_seed(0)
    model = vit_encoder("mini", img_size=32, patch_size=16, num_frames=2)
    w = model.blocks[0].attn.qkv.weight
    assert abs(w.std().item() - 0.02) < 0.003
    assert torch.count_nonzero(model.blocks[0].attn.qkv.bias) == 0
    # residual-branch outputs rescaled by 1/sqrt(2 * layer)
    ratio = model.blocks[0].mlp.fc2.weight.std() / model.blocks[3].mlp.fc2.weight.std()
    assert abs(ratio.item() - math.sqrt(4)) < 0.2


# ---------------------------------------------------------------- sin-cos position embedding


def test_sincos_split_dims():
    assert sincos_split(96, uniform_power=True) == (32, 32, 32)
    assert sincos_split(100, uniform_power=True) == (34, 34, 34)  # cut to 100: w keeps 32
    assert sincos_split(1408, uniform_power=True) == (470, 470, 470)
    assert sincos_split(96, uniform_power=False) == (48, 24, 24)


@pytest.mark.parametrize("uniform_power", [True, False])
def test_sincos_axes_and_bounds(uniform_power):
    dim, grid = 104, (3, 4, 5)
    dt, dh, _ = sincos_split(dim, uniform_power)
    emb = sincos_3d(dim, grid, uniform_power)
    assert emb.shape == (1, 60, dim) and emb.dtype == torch.float32
    assert emb.abs().max() <= 1.0
    vol = emb[0].reshape(*grid, dim)
    t_part, h_part, w_part = vol[..., :dt], vol[..., dt : dt + dh], vol[..., dt + dh :]
    # each part depends on its own axis only
    assert torch.equal(t_part, t_part[:, :1, :1].expand_as(t_part))
    assert torch.equal(h_part, h_part[:1, :, :1].expand_as(h_part))
    assert torch.equal(w_part, w_part[:1, :1, :].expand_as(w_part))
    # 1-D layout [sin | cos]: position 0 gives zeros then ones
    assert torch.equal(t_part[0, 0, 0], torch.cat([torch.zeros(dt // 2), torch.ones(dt // 2)]))
    # distinct positions get distinct vectors
    assert torch.unique(emb[0], dim=0).shape[0] == 60
    # known value: t = 2, first frequency is 1 rad per step
    assert torch.isclose(vol[2, 0, 0, 0], torch.tensor(math.sin(2.0)))


def test_interpolation():
    emb = sincos_3d(96, (4, 6, 6))
    assert interpolate_pos_embed(emb, (4, 6, 6), (4, 6, 6)) is emb
    up = interpolate_pos_embed(emb, (4, 6, 6), (8, 12, 12))
    assert up.shape == (1, 8 * 12 * 12, 96) and up.abs().max() <= 1.0
    down = interpolate_pos_embed(emb, (4, 6, 6), (2, 3, 3))
    assert down.shape == (1, 18, 96)
    # fewer time steps: first time slices, the same as recomputing the table for that grid
    torch.testing.assert_close(
        pos_embed_for_grid(emb, (4, 6, 6), (1, 6, 6)), sincos_3d(96, (1, 6, 6))
    )
    with pytest.raises(ValueError, match="tokens"):
        interpolate_pos_embed(emb, (4, 6, 5), (4, 6, 6))


# ---------------------------------------------------------------- RoPE


def reference_quirky_rope(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Element-by-element rewrite of the released V-JEPA 2 formula (tiled tables, adjacent pairs).

    x [N, head_dim], pos [N, 3]. Dim j of segment s (axis s) uses angle
    pos[s] * 10000 ** (-(j mod (seg/2)) / (seg/2)) and is mixed with its neighbour j ^ 1.
    """
    n, head_dim = x.shape
    seg = 2 * ((head_dim // 3) // 2)
    half = seg // 2
    out = x.clone()
    for i in range(n):
        for s in range(3):
            for j in range(seg):
                k = j % half  # tiled: repeat(..., 2), not repeat_interleave
                theta = float(pos[i, s]) * 10000.0 ** (-k / half)
                d = s * seg + j
                if j % 2 == 0:
                    val = x[i, d] * math.cos(theta) - x[i, d + 1] * math.sin(theta)
                else:
                    val = x[i, d] * math.cos(theta) + x[i, d - 1] * math.sin(theta)
                out[i, d] = val
    return out


def textbook_rope(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Norm-preserving RoPE on the same segments (repeat_interleave tables): what NOT to do."""
    n, head_dim = x.shape
    seg = 2 * ((head_dim // 3) // 2)
    half = seg // 2
    out = x.clone()
    omega = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
    for s in range(3):
        ang = pos[:, s : s + 1].double() * omega  # [N, half]
        a, b = (
            x[:, s * seg : (s + 1) * seg : 2].double(),
            x[:, s * seg + 1 : (s + 1) * seg : 2].double(),
        )
        out[:, s * seg : (s + 1) * seg : 2] = (a * ang.cos() - b * ang.sin()).float()
        out[:, s * seg + 1 : (s + 1) * seg : 2] = (b * ang.cos() + a * ang.sin()).float()
    return out


@pytest.mark.parametrize("head_dim", [64, 80, 32, 20])
def test_rope_quirk_matches_reference_formula(head_dim):
    torch.manual_seed(0)
    grid = (3, 4, 5)
    idx = torch.randperm(60)[:12]
    pos = token_positions(idx, grid)
    x = torch.randn(1, 2, 12, head_dim)
    cos, sin = rope_tables(pos, head_dim)
    seg = rope_segment_dim(head_dim)
    assert cos.shape == (12, 3 * seg)
    out = apply_rope(x, cos, sin)
    for h in range(2):
        want = reference_quirky_rope(x[0, h], pos)
        torch.testing.assert_close(out[0, h], want, atol=1e-5, rtol=1e-5)
        # the quirk is there: the textbook rotation differs and would preserve norms
        textbook = textbook_rope(x[0, h], pos)
        assert not torch.allclose(out[0, h], textbook, atol=1e-3)
        torch.testing.assert_close(textbook.norm(dim=-1), x[0, h].norm(dim=-1))
    assert not torch.allclose(out.norm(dim=-1), x.norm(dim=-1), atol=1e-3)
    # leftover dims pass through untouched
    assert torch.equal(out[..., 3 * seg :], x[..., 3 * seg :])


def test_rope_segments_and_positions():
    assert rope_segment_dim(64) == 20  # giant (1408 / 22), large, base: 60 rotated, 4 left
    assert rope_segment_dim(80) == 26  # huge: 78 rotated, 2 left
    assert rope_segment_dim(32) == 10
    pos = token_positions(torch.tensor([0, 1, 5, 19, 20, 47]), (3, 4, 5))
    assert pos.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 3, 4], [1, 0, 0], [2, 1, 2]]
    # spatial positions scaled by grid_size / H (here trained at 4x4, run at 8x8)
    scaled = token_positions(torch.tensor([8 * 8 + 8 * 3 + 6]), (2, 8, 8), ref_grid_size=4)
    assert scaled.tolist() == [[1.0, 1.5, 3.0]]
    # at the training resolution the scale is exactly 1
    assert torch.equal(
        token_positions(torch.arange(60), (3, 4, 5), ref_grid_size=4)[:, :2],
        token_positions(torch.arange(60), (3, 4, 5))[:, :2],
    )
    # per-sample positions [B, N, 3] give per-sample tables that broadcast over heads
    cos, sin = rope_tables(token_positions(torch.tensor([[0, 1], [2, 3]]), (3, 4, 5)), 32)
    assert cos.shape == (2, 2, 30)
    assert apply_rope(torch.randn(2, 4, 2, 32), cos, sin).shape == (2, 4, 2, 32)


def test_rope_encoder_uses_token_positions():
    """With RoPE and no table, shuffling the kept indices only permutes the outputs."""
    torch.manual_seed(0)
    model = small_encoder(use_rope=True)
    x = torch.randn(1, 3, 4, 32, 32)
    keep = torch.tensor([[3, 7, 11, 20, 31]])
    perm = torch.tensor([4, 0, 3, 1, 2])
    with torch.no_grad():
        a = model(x, keep)
        b = model(x, keep[:, perm])
    torch.testing.assert_close(b, a[:, perm], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- predictor


def test_predictor_layout():
    pred = small_predictor(num_mask_tokens=3)
    sd = pred.state_dict()
    assert sd["predictor_embed.weight"].shape == (48, 96)
    assert [k for k in sd if k.startswith("mask_tokens")] == [
        "mask_tokens.0",
        "mask_tokens.1",
        "mask_tokens.2",
    ]
    assert sd["mask_tokens.0"].shape == (1, 1, 48) and torch.count_nonzero(sd["mask_tokens.0"]) == 0
    assert sd["predictor_pos_embed"].shape == (1, 32, 48)
    assert sd["predictor_blocks.1.attn.qkv.weight"].shape == (144, 48)
    assert sd["predictor_blocks.0.mlp.fc2.weight"].shape == (48, 192)
    assert "predictor_norm.weight" in sd
    assert sd["predictor_proj.weight"].shape == (96, 48)
    assert not small_predictor(zero_init_mask_tokens=False).mask_tokens[0].eq(0).all()
    assert "predictor_pos_embed" not in small_predictor(use_rope=True).state_dict()


@pytest.mark.parametrize("use_rope", [False, True])
def test_predictor_outputs_targets_in_order(use_rope):
    torch.manual_seed(0)
    pred = small_predictor(use_rope=use_rope).eval()
    for tok in pred.mask_tokens:  # non-zero tokens so the mask-token choice shows
        torch.nn.init.normal_(tok, std=0.5)
    ctx_idx = torch.tensor([[0, 2, 5, 9, 12, 30], [1, 3, 4, 8, 20, 31]])
    tgt_idx = torch.tensor([[6, 7, 15, 16], [10, 11, 21, 22]])
    ctx = torch.randn(2, 6, 96)
    with torch.no_grad():
        out = pred(ctx, ctx_idx, tgt_idx)
        assert out.shape == (2, 4, 96)
        perm = torch.tensor([2, 0, 3, 1])
        torch.testing.assert_close(
            pred(ctx, ctx_idx, tgt_idx[:, perm]), out[:, perm], atol=1e-5, rtol=1e-5
        )
        # different target positions -> different predictions
        assert not torch.allclose(out[:, 0], out[:, 1])
        # context content matters; mask type matters; mask_index wraps modulo the token count
        assert not torch.allclose(pred(ctx + 1, ctx_idx, tgt_idx), out)
        assert not torch.allclose(pred(ctx, ctx_idx, tgt_idx, mask_index=1), out)
        torch.testing.assert_close(pred(ctx, ctx_idx, tgt_idx, mask_index=2), out)
        # batch rows are independent
        torch.testing.assert_close(
            pred(ctx[1:], ctx_idx[1:], tgt_idx[1:]), out[1:], atol=1e-5, rtol=1e-5
        )


def test_predictor_gradients_reach_mask_tokens():
    torch.manual_seed(0)
    pred = small_predictor()
    ctx = torch.randn(2, 6, 96, requires_grad=True)
    ctx_idx = torch.arange(6).expand(2, -1)
    tgt_idx = torch.arange(6, 14).expand(2, -1)
    pred(ctx, ctx_idx, tgt_idx, mask_index=1).pow(2).mean().backward()
    assert pred.mask_tokens[1].grad is not None and pred.mask_tokens[1].grad.abs().sum() > 0
    assert pred.mask_tokens[0].grad is None
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0


def test_predictor_other_grid_and_bad_input():
    torch.manual_seed(0)
    for use_rope in (False, True):
        pred = small_predictor(use_rope=use_rope).eval()
        ctx_idx = torch.tensor([[0, 50, 100]])
        tgt_idx = torch.tensor([[127, 64]])
        out = pred(torch.randn(1, 3, 96), ctx_idx, tgt_idx, grid=(2, 8, 8))
        assert out.shape == (1, 2, 96)
    with pytest.raises(ValueError):
        pred(torch.randn(1, 3, 96), torch.tensor([[0, 1]]), torch.tensor([[2]]))
