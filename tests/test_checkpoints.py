"""load_vjepa: released V-JEPA / V-JEPA 2 / HF vjepa2 weights give the original features.

The checkpoints here are random but laid out exactly as the releases lay them out (top-level
`encoder` / `target_encoder` / `predictor` / `opt` / ...; `module.backbone.` prefixes; fused
qkv; HF's split q/k/v and stacked mask tokens). The expected features come from a small
reference forward pass written in this file straight from the published description and run
on the raw state dict in float64, so it shares no code with jepa_world.models.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from jepa_world.checkpoints import load_vjepa
from jepa_world.training.cli import UserError

PATCH, TUBELET, FRAMES, IMG = 8, 2, 4, 32
GRID = (FRAMES // TUBELET, IMG // PATCH, IMG // PATCH)  # (2, 4, 4): 32 tokens
ATOL, RTOL = 2e-5, 1e-5  # float32 noise here is <= 1.4e-5; real layout bugs give > 1e-2

# ----------------------------------------------------------------------------- reference model


def ref_sincos_table(dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """V-JEPA's fixed 3D sin-cos table, uniform_power: ceil(D/6)*2 dims per axis, [t|h|w]."""
    part = 2 * math.ceil(dim / 6)
    half = part // 2
    omega = 1.0 / 10000.0 ** (torch.arange(half, dtype=torch.float64) / half)
    rows = []
    for t in range(grid[0]):
        for h in range(grid[1]):
            for w in range(grid[2]):
                vec = []
                for p in (t, h, w):
                    vec += [torch.sin(p * omega), torch.cos(p * omega)]
                rows.append(torch.cat(vec)[:dim])
    return torch.stack(rows).float().unsqueeze(0)


def ref_positions(idx: torch.Tensor, grid, trained_side: int) -> torch.Tensor:
    """[..., 3] (t, h, w) of flat token indices; h and w rescaled to the trained grid side."""
    _, gh, gw = grid
    t = idx // (gh * gw)
    h = (idx % (gh * gw)) // gw
    w = idx % gw
    return torch.stack(
        [t.double(), h.double() * trained_side / gh, w.double() * trained_side / gw], dim=-1
    )


def ref_rope(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """3D RoPE with V-JEPA 2's quirk, element by element.

    x [B, heads, N, hd], pos [B, N, 3]. Per head: three segments of seg = 2*((hd//3)//2) dims
    for t, h, w; dim j of a segment uses angle p * f[j mod seg/2] (the seg/2 table is tiled,
    not interleaved) and is mixed with its adjacent partner j^1; leftover dims untouched.
    """
    hd = x.shape[-1]
    seg = 2 * ((hd // 3) // 2)
    half = seg // 2
    out = x.clone()
    if half == 0:
        return out
    freqs = 1.0 / 10000.0 ** (torch.arange(half, dtype=torch.float64) / half)
    for axis in range(3):
        base = axis * seg
        for j in range(seg):
            angle = (pos[..., axis] * freqs[j % half])[:, None, :]  # [B, 1, N]
            sign = -1.0 if j % 2 == 0 else 1.0
            partner = x[..., base + (j ^ 1)]
            out[..., base + j] = x[..., base + j] * angle.cos() + sign * partner * angle.sin()
    return out


def ref_layer_norm(x, weight, bias, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ref_block(x, sd, prefix, heads, pos):
    b, n, d = x.shape
    hd = d // heads
    y = ref_layer_norm(x, sd[prefix + "norm1.weight"], sd[prefix + "norm1.bias"])
    qkv = y @ sd[prefix + "attn.qkv.weight"].T + sd[prefix + "attn.qkv.bias"]  # [B, N, 3D]
    qkv = qkv.reshape(b, n, 3, heads, hd)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # [B, heads, N, hd]
    if pos is not None:
        q, k = ref_rope(q, pos), ref_rope(k, pos)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    probs = torch.exp(scores - scores.amax(-1, keepdim=True))
    probs = probs / probs.sum(-1, keepdim=True)
    att = (probs @ v).transpose(1, 2).reshape(b, n, d)
    x = x + att @ sd[prefix + "attn.proj.weight"].T + sd[prefix + "attn.proj.bias"]
    y = ref_layer_norm(x, sd[prefix + "norm2.weight"], sd[prefix + "norm2.bias"])
    y = y @ sd[prefix + "mlp.fc1.weight"].T + sd[prefix + "mlp.fc1.bias"]
    y = 0.5 * y * (1.0 + torch.erf(y / math.sqrt(2.0)))  # exact GELU
    return x + y @ sd[prefix + "mlp.fc2.weight"].T + sd[prefix + "mlp.fc2.bias"]


def num_blocks(sd, prefix):
    return len({k[len(prefix) :].split(".")[0] for k in sd if k.startswith(prefix)})


def ref_encoder(sd, video, heads, rope, trained_side=None):
    """Original forward on a raw release-named dict; video [B,3,T,H,W] or image [B,3,H,W]."""
    sd = {k: v.double() for k, v in sd.items()}
    video = video.double()
    if video.dim() == 4:  # a single image fills the first tubelet by repetition
        video = video.unsqueeze(2).repeat(1, 1, TUBELET, 1, 1)
    b, c, frames, hh, ww = video.shape
    t, h, w = frames // TUBELET, hh // PATCH, ww // PATCH
    # tubelet embedding as a matmul over (C, tubelet, p, p) cubes in t, h, w order
    cubes = video.reshape(b, c, t, TUBELET, h, PATCH, w, PATCH)
    cubes = cubes.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, t * h * w, -1)
    kernel = sd["patch_embed.proj.weight"].reshape(sd["patch_embed.proj.weight"].shape[0], -1)
    x = cubes @ kernel.T + sd["patch_embed.proj.bias"]
    pos = None
    if rope:
        idx = torch.arange(t * h * w).expand(b, -1)
        pos = ref_positions(idx, (t, h, w), trained_side)
    else:
        x = x + sd["pos_embed"][:, : t * h * w]  # shorter clip: first time slices
    for i in range(num_blocks(sd, "blocks.")):
        x = ref_block(x, sd, f"blocks.{i}.", heads, pos)
    return ref_layer_norm(x, sd["norm.weight"], sd["norm.bias"])


def ref_predictor(sd, context, ctx_idx, tgt_idx, heads, rope, mask_index, grid):
    """Original masked predictor on a raw release-named dict (trained grid == `grid`).

    V-JEPA 2 sorts [context | targets] by position before the blocks and unsorts after; with
    full attention that permutation changes nothing, so it is left out.
    """
    sd = {k: v.double() for k, v in sd.items()}
    context = context.double()
    b, n_ctx, _ = context.shape
    x = context @ sd["predictor_embed.weight"].T + sd["predictor_embed.bias"]
    num_tokens = sum(1 for k in sd if k.startswith("mask_tokens."))
    tokens = sd[f"mask_tokens.{mask_index % num_tokens}"].expand(b, tgt_idx.shape[1], -1)
    pos = None
    if rope:
        pos = ref_positions(torch.cat([ctx_idx, tgt_idx], 1), grid, grid[1])
    else:
        table = sd["predictor_pos_embed"][0]
        x = x + table[ctx_idx]
        tokens = tokens + table[tgt_idx]
    x = torch.cat([x, tokens], dim=1)
    for i in range(num_blocks(sd, "predictor_blocks.")):
        x = ref_block(x, sd, f"predictor_blocks.{i}.", heads, pos)
    x = ref_layer_norm(x, sd["predictor_norm.weight"], sd["predictor_norm.bias"])[:, n_ctx:]
    return x @ sd["predictor_proj.weight"].T + sd["predictor_proj.bias"]


# ----------------------------------------------------------------------------- release files


def _linear(sd, name, out_f, in_f, gen):
    sd[name + ".weight"] = torch.randn(out_f, in_f, generator=gen) / math.sqrt(in_f)
    sd[name + ".bias"] = 0.1 * torch.randn(out_f, generator=gen)


def _norm(sd, name, dim, gen):
    sd[name + ".weight"] = 1.0 + 0.2 * torch.randn(dim, generator=gen)
    sd[name + ".bias"] = 0.2 * torch.randn(dim, generator=gen)


def _blocks(sd, prefix, dim, depth, gen, mlp_ratio=4):
    for i in range(depth):
        p = f"{prefix}{i}."
        _norm(sd, p + "norm1", dim, gen)
        _linear(sd, p + "attn.qkv", 3 * dim, dim, gen)
        sd[p + "attn.qkv.weight"] *= 2.0  # sharper attention: a wrong head split shows
        _linear(sd, p + "attn.proj", dim, dim, gen)
        _norm(sd, p + "norm2", dim, gen)
        _linear(sd, p + "mlp.fc1", mlp_ratio * dim, dim, gen)
        _linear(sd, p + "mlp.fc2", dim, mlp_ratio * dim, gen)


def make_encoder(dim, seed, depth=2, pos_embed="sincos"):
    """Release-named encoder weights; pos_embed: 'sincos', 'zeros' or None."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    fan_in = 3 * TUBELET * PATCH * PATCH
    sd["patch_embed.proj.weight"] = torch.randn(
        dim, 3, TUBELET, PATCH, PATCH, generator=gen
    ) / math.sqrt(fan_in)
    sd["patch_embed.proj.bias"] = 0.1 * torch.randn(dim, generator=gen)
    if pos_embed == "sincos":
        sd["pos_embed"] = ref_sincos_table(dim, GRID)
    elif pos_embed == "zeros":
        sd["pos_embed"] = torch.zeros(1, math.prod(GRID), dim)
    _blocks(sd, "blocks.", dim, depth, gen)
    _norm(sd, "norm", dim, gen)
    return sd


def make_predictor(dim, pred_dim, num_tokens, seed, depth=2, pos_embed=True):
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    _linear(sd, "predictor_embed", pred_dim, dim, gen)
    for k in range(num_tokens):
        sd[f"mask_tokens.{k}"] = torch.randn(1, 1, pred_dim, generator=gen)
    if pos_embed:
        sd["predictor_pos_embed"] = ref_sincos_table(pred_dim, GRID)
    _blocks(sd, "predictor_blocks.", pred_dim, depth, gen)
    _norm(sd, "predictor_norm", pred_dim, gen)
    _linear(sd, "predictor_proj", dim, pred_dim, gen)
    return sd


def save_release(path, encoder=None, target=None, predictor=None, prefix="module.backbone."):
    """torch.save a dict shaped like Meta's training checkpoints."""
    ckpt = {
        "opt": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4)}},
            "param_groups": [{"lr": 1e-4, "weight_decay": 0.04, "params": [0]}],
        },
        "scaler": None,
        "epoch": 7,
        "loss": 0.1234,
        "batch_size": 2,
        "world_size": 1,
        "lr": 1e-4,
    }
    for name, sd in (("encoder", encoder), ("target_encoder", target), ("predictor", predictor)):
        if sd is not None:
            ckpt[name] = {prefix + k: v for k, v in sd.items()}
    torch.save(ckpt, path)
    return path


def to_hf(encoder, predictor):
    """The Hugging Face vjepa2 layout of release-named weights (as its converter writes it)."""
    out = {}

    def block_parts(src, dst, sd, dim):
        for key, val in sd.items():
            if not key.startswith(src):
                continue
            idx, rest = key[len(src) :].split(".", 1)
            head = f"{dst}{idx}."
            if rest.startswith("attn.qkv."):
                param = rest.split(".")[-1]
                for j, name in enumerate(("query", "key", "value")):
                    out[f"{head}attention.{name}.{param}"] = val[j * dim : (j + 1) * dim].clone()
            else:
                out[head + rest.replace("attn.", "attention.")] = val

    dim = encoder["norm.weight"].shape[0]
    out["encoder.embeddings.patch_embeddings.proj.weight"] = encoder["patch_embed.proj.weight"]
    out["encoder.embeddings.patch_embeddings.proj.bias"] = encoder["patch_embed.proj.bias"]
    block_parts("blocks.", "encoder.layer.", encoder, dim)
    out["encoder.layernorm.weight"] = encoder["norm.weight"]
    out["encoder.layernorm.bias"] = encoder["norm.bias"]
    pdim = predictor["predictor_norm.weight"].shape[0]
    out["predictor.embeddings.predictor_embeddings.weight"] = predictor["predictor_embed.weight"]
    out["predictor.embeddings.predictor_embeddings.bias"] = predictor["predictor_embed.bias"]
    n_tok = sum(1 for k in predictor if k.startswith("mask_tokens."))
    out["predictor.embeddings.mask_tokens"] = torch.stack(
        [predictor[f"mask_tokens.{k}"] for k in range(n_tok)]
    )
    block_parts("predictor_blocks.", "predictor.layer.", predictor, pdim)
    out["predictor.layernorm.weight"] = predictor["predictor_norm.weight"]
    out["predictor.layernorm.bias"] = predictor["predictor_norm.bias"]
    out["predictor.proj.weight"] = predictor["predictor_proj.weight"]
    out["predictor.proj.bias"] = predictor["predictor_proj.bias"]
    return {k: v.contiguous() for k, v in out.items()}


def clip(seed=0, batch=2):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, FRAMES, IMG, IMG, generator=gen)


def masks(batch=2, seed=1, n_ctx=12, n_tgt=9):
    gen = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(math.prod(GRID), generator=gen) for _ in range(batch)])
    return perms[:, :n_ctx], perms[:, n_ctx : n_ctx + n_tgt]


def assert_close(actual, expected):
    """Float32 model vs float64 reference: |a - e| <= ATOL + RTOL * |e| everywhere."""
    assert actual.shape == expected.shape
    err = (actual.double() - expected).abs()
    worst = (err / (ATOL + RTOL * expected.abs())).max().item()
    assert worst <= 1.0, f"max abs error {err.max().item():.3g} ({worst:.2f} x tolerance)"


def features(model, x):
    with torch.no_grad():
        return model(x)


# ----------------------------------------------------------------------------- V-JEPA 1


@pytest.mark.parametrize("prefix", ["module.backbone.", "module.", "backbone."])
def test_vjepa1_release_matches_reference(tmp_path, prefix):
    enc, tgt = make_encoder(48, seed=1), make_encoder(48, seed=2)
    pred = make_predictor(48, 36, num_tokens=2, seed=3)
    path = save_release(tmp_path / "vitl16.pth.tar", enc, tgt, pred, prefix=prefix)
    encoder, predictor = load_vjepa(path, num_heads=3)

    assert not encoder.training and not predictor.training
    assert not encoder.use_rope and encoder.pos_embed is not None
    assert (encoder.img_size, encoder.num_frames, encoder.patch_size) == (IMG, FRAMES, PATCH)
    assert (encoder.embed_dim, encoder.depth, encoder.num_heads) == (48, 2, 3)
    assert next(encoder.parameters()).device.type == "cpu"
    x = clip()
    out = features(encoder, x)
    assert_close(out, ref_encoder(tgt, x, heads=3, rope=False))  # target_encoder preferred
    assert (out.double() - ref_encoder(enc, x, heads=3, rope=False)).abs().max() > 1e-2

    # V-JEPA 1 predictors have as many heads as the encoder
    assert predictor.num_heads == 3 and predictor.num_mask_tokens == 2
    ctx_idx, tgt_idx = masks()
    ctx = torch.gather(out, 1, ctx_idx[..., None].expand(-1, -1, 48))
    with torch.no_grad():
        got = predictor(ctx, ctx_idx, tgt_idx, mask_index=1)
    want = ref_predictor(pred, ctx, ctx_idx, tgt_idx, 3, rope=False, mask_index=1, grid=GRID)
    assert_close(got, want)


def test_vjepa1_single_image_and_encoder_fallback(tmp_path):
    enc = make_encoder(48, seed=4)
    path = save_release(tmp_path / "enc_only.pt", encoder=enc)  # no target_encoder, no predictor
    encoder, predictor = load_vjepa(path, num_heads=3)
    assert predictor is None
    image = clip(seed=5)[:, :, 0]
    assert_close(features(encoder, image), ref_encoder(enc, image, heads=3, rope=False))


# ----------------------------------------------------------------------------- V-JEPA 2


def test_vjepa2_release_matches_reference(tmp_path):
    """RoPE model whose file still carries a filled, unused pos_embed (and predictor one)."""
    enc, tgt = make_encoder(96, seed=6), make_encoder(96, seed=7)
    pred = make_predictor(96, 96, num_tokens=10, seed=8)
    path = save_release(tmp_path / "vitl.pt", enc, tgt, pred)
    encoder, predictor = load_vjepa(path)

    assert encoder.use_rope and encoder.pos_embed is None
    assert encoder.num_heads == 3  # width 96 -> registry default
    assert (encoder.img_size, encoder.num_frames) == (256, 64)  # V-JEPA 2 release defaults
    assert predictor.num_heads == 12 and predictor.num_mask_tokens == 10
    x = clip(seed=9)
    # 256 px training grid side 32: positions of a 4x4 grid are scaled by 32 / 4
    assert_close(features(encoder, x), ref_encoder(tgt, x, heads=3, rope=True, trained_side=32))
    image = x[:, :, 0]
    want = ref_encoder(tgt, image, heads=3, rope=True, trained_side=32)
    assert_close(features(encoder, image), want)


def test_vjepa2_predictor_matches_reference(tmp_path):
    enc = make_encoder(96, seed=10, pos_embed=None)
    pred = make_predictor(96, 96, num_tokens=10, seed=11, pos_embed=False)
    path = save_release(tmp_path / "vitl.pt", target=enc, predictor=pred)
    encoder, predictor = load_vjepa(path, img_size=IMG, num_frames=FRAMES)
    assert encoder.use_rope and predictor.use_rope
    x = clip(seed=12)
    out = features(encoder, x)
    assert_close(out, ref_encoder(enc, x, heads=3, rope=True, trained_side=GRID[1]))
    ctx_idx, tgt_idx = masks(seed=13)
    ctx = torch.gather(out, 1, ctx_idx[..., None].expand(-1, -1, 96))
    with torch.no_grad():
        got = predictor(ctx, ctx_idx, tgt_idx, mask_index=13)
    want = ref_predictor(pred, ctx, ctx_idx, tgt_idx, 12, rope=True, mask_index=13, grid=GRID)
    assert_close(got, want)


def test_rope_rule(tmp_path):
    zeros = save_release(tmp_path / "zeros.pt", target=make_encoder(96, 14, pos_embed="zeros"))
    assert load_vjepa(zeros)[0].use_rope  # never-initialised pos_embed: unused
    filled = save_release(tmp_path / "filled.pt", target=make_encoder(96, 14))
    assert not load_vjepa(filled)[0].use_rope  # looks like V-JEPA 1 ...
    encoder, _ = load_vjepa(filled, use_rope=True)  # ... unless told otherwise
    assert encoder.use_rope and encoder.pos_embed is None


# ----------------------------------------------------------------------------- Hugging Face


def _hf_weights(seed):
    enc = make_encoder(64, seed=seed, pos_embed=None)
    pred = make_predictor(64, 64, num_tokens=10, seed=seed + 1, pos_embed=False)
    return enc, pred


def test_hf_folder_matches_reference(tmp_path):
    enc, pred = _hf_weights(20)
    folder = tmp_path / "vjepa2-vitl-fpc64-256"
    folder.mkdir()
    save_file(to_hf(enc, pred), str(folder / "model.safetensors"))
    config = {
        "model_type": "vjepa2",
        "hidden_size": 64,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "patch_size": PATCH,
        "tubelet_size": TUBELET,
        "crop_size": IMG,
        "frames_per_clip": FRAMES,
        "mlp_ratio": 4.0,
        "pred_hidden_size": 64,
        "pred_num_attention_heads": 2,
        "pred_num_hidden_layers": 2,
        "pred_num_mask_tokens": 10,
    }
    (folder / "config.json").write_text(json.dumps(config))
    encoder, predictor = load_vjepa(folder)

    assert encoder.use_rope and (encoder.num_heads, predictor.num_heads) == (2, 2)
    assert (encoder.img_size, encoder.num_frames) == (IMG, FRAMES)
    x = clip(seed=21)
    out = features(encoder, x)
    assert_close(out, ref_encoder(enc, x, heads=2, rope=True, trained_side=GRID[1]))
    image = x[:, :, 0]
    assert_close(
        features(encoder, image), ref_encoder(enc, image, heads=2, rope=True, trained_side=4)
    )
    ctx_idx, tgt_idx = masks(seed=22)
    ctx = torch.gather(out, 1, ctx_idx[..., None].expand(-1, -1, 64))
    with torch.no_grad():
        got = predictor(ctx, ctx_idx, tgt_idx, mask_index=4)
    want = ref_predictor(pred, ctx, ctx_idx, tgt_idx, 2, rope=True, mask_index=4, grid=GRID)
    assert_close(got, want)


def test_hf_safetensors_file_with_overrides(tmp_path):
    enc, pred = _hf_weights(23)
    path = tmp_path / "model.safetensors"  # no config.json next to it
    save_file(to_hf(enc, pred), str(path))
    with pytest.raises(UserError, match="num_heads="):
        load_vjepa(path)  # width 64 is no registry size
    encoder, predictor = load_vjepa(
        path, num_heads=2, predictor_num_heads=2, img_size=IMG, with_predictor=False
    )
    assert predictor is None
    x = clip(seed=24)
    assert_close(features(encoder, x), ref_encoder(enc, x, heads=2, rope=True, trained_side=4))


# ----------------------------------------------------------------------------- overrides


def test_overrides_are_honoured(tmp_path):
    tgt = make_encoder(48, seed=30)
    path = save_release(tmp_path / "v1.pt", target=tgt)
    x = clip(seed=31)
    encoder, _ = load_vjepa(path, num_heads=4)
    assert encoder.num_heads == 4
    out4 = features(encoder, x)
    assert_close(out4, ref_encoder(tgt, x, heads=4, rope=False))
    assert (out4.double() - ref_encoder(tgt, x, heads=3, rope=False)).abs().max() > 1e-2

    rope = save_release(tmp_path / "v2.pt", target=make_encoder(96, seed=32, pos_embed=None))
    encoder, _ = load_vjepa(rope, img_size=IMG)
    assert encoder.img_size == IMG
    want = ref_encoder(make_encoder(96, seed=32, pos_embed=None), x, 3, True, trained_side=4)
    out = features(encoder, x)
    assert_close(out, want)
    default = features(load_vjepa(rope)[0], x)  # trained at 256 px: other RoPE positions
    assert (out - default).abs().max() > 1e-3


def test_pos_embed_grid_override_conflict(tmp_path):
    path = save_release(tmp_path / "v1.pt", target=make_encoder(48, seed=33))
    encoder, _ = load_vjepa(path, num_heads=3, num_frames=FRAMES)
    assert encoder.img_size == IMG
    with pytest.raises(UserError, match="'pos_embed'"):
        load_vjepa(path, num_heads=3, img_size=24)


# ----------------------------------------------------------------------------- bad input


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text
    return text


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, ("touch " + shlex.quote(self.marker),))


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"encoder": {"patch_embed.proj.weight": _Payload(marker)}, "epoch": 1}, path)
    with pytest.raises(UserError) as info:
        load_vjepa(path)
    assert "refusing" in _one_line(info)
    assert not marker.exists()

    # the payload is live: an unsafe load (in a child process) does run it
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert marker.exists()


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(UserError) as info:
        load_vjepa(tmp_path / "nope.pt")
    assert "not found" in _one_line(info)
    with pytest.raises(UserError) as info:
        load_vjepa(tmp_path)  # a folder without weights
    _one_line(info)

    good = save_release(tmp_path / "good.pt", target=make_encoder(48, seed=40))
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as info:
        load_vjepa(cut)
    assert "corrupt or truncated" in _one_line(info)

    st = tmp_path / "cut.safetensors"
    save_file({"encoder.layernorm.weight": torch.ones(8)}, str(st))
    st.write_bytes(st.read_bytes()[:-10])
    with pytest.raises(UserError) as info:
        load_vjepa(st)
    assert "corrupt or truncated" in _one_line(info)

    notdict = tmp_path / "list.pt"
    torch.save([1, 2, 3], notdict)
    with pytest.raises(UserError) as info:
        load_vjepa(notdict)
    _one_line(info)


def test_mismatches_name_the_key(tmp_path):
    sd = make_encoder(48, seed=50)
    sd["blocks.1.mlp.fc2.bias"] = torch.zeros(47)
    with pytest.raises(UserError) as info:
        load_vjepa(save_release(tmp_path / "a.pt", target=sd), num_heads=3)
    assert "'blocks.1.mlp.fc2.bias'" in _one_line(info)

    sd = make_encoder(48, seed=50)
    del sd["blocks.0.norm2.weight"]
    with pytest.raises(UserError) as info:
        load_vjepa(save_release(tmp_path / "b.pt", target=sd), num_heads=3)
    assert "'blocks.0.norm2.weight'" in _one_line(info)

    sd = make_encoder(48, seed=50)
    sd["blocks.0.attn.q_norm.weight"] = torch.ones(16)
    with pytest.raises(UserError) as info:
        load_vjepa(save_release(tmp_path / "c.pt", target=sd), num_heads=3)
    assert "'blocks.0.attn.q_norm.weight'" in _one_line(info)

    pred = make_predictor(48, 36, num_tokens=2, seed=51)
    pred["predictor_proj.weight"] = torch.zeros(48, 35)
    path = save_release(tmp_path / "d.pt", target=make_encoder(48, seed=50), predictor=pred)
    with pytest.raises(UserError) as info:
        load_vjepa(path, num_heads=3)
    assert "'predictor_proj.weight'" in _one_line(info)
    encoder, predictor = load_vjepa(path, num_heads=3, with_predictor=False)
    assert predictor is None

    hf = to_hf(*_hf_weights(52))
    hf["encoder.layer.0.attention.rotary.weight"] = torch.ones(2)
    save_file(hf, str(tmp_path / "e.safetensors"))
    with pytest.raises(UserError) as info:
        load_vjepa(tmp_path / "e.safetensors", num_heads=2, predictor_num_heads=2)
    assert "'encoder.layer.0.attention.rotary.weight'" in _one_line(info)

    with pytest.raises(UserError, match="unknown load_vjepa option 'heads'"):
        load_vjepa(path, heads=3)


def test_release_checkpoint_is_plain_pickle(tmp_path):
    """The dummy release file itself needs no custom classes (what weights_only allows)."""
    path = save_release(tmp_path / "r.pt", target=make_encoder(48, seed=60))
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) >= {"target_encoder", "opt", "epoch", "loss"}
