"""Import released V-JEPA, V-JEPA 2 and Hugging Face `vjepa2` weights into our models.

Users want to start from Meta's pretrained encoders rather than from scratch, so
`load_vjepa(path)` turns any of the three published layouts into a `VisionTransformer`
(and, when the file has one, a `MaskedPredictor`) that computes the same features:

* Meta's training checkpoints (`.pt` / `.pth` / `.tar`): a dict with `encoder`,
  `target_encoder`, `predictor`, `opt`, `epoch`, ...; every weight name carries a
  `module.backbone.` / `module.` / `backbone.` prefix. `target_encoder` (the EMA encoder that
  evaluation uses) is preferred over `encoder`. Loaded with ``weights_only=True``, so a file can
  never run code here.
* Hugging Face `vjepa2` (`model.safetensors`, a folder holding it and `config.json`, or a
  `pytorch_model.bin`): renamed keys with q/k/v split; mapped back by `HF_KEY_MAP` and fused.
* A flat state dict in the released naming (encoder only, or encoder + predictor keys).

The architecture is read from tensor shapes (width, depth, MLP ratio, patch / tubelet size,
predictor width / depth / number of mask tokens); `config.json` of an HF folder is preferred
where it states a value. Shapes cannot say how many heads a layer has, or which clip size a
RoPE model was trained at, so those come from config, overrides or the defaults below.

Rule for RoPE vs. absolute position embedding (first match wins):
  1. the `use_rope=` override;
  2. HF `vjepa2` layout -> RoPE (`config.json`'s `use_rope` when stated);
  3. no encoder `pos_embed` -> RoPE;
  4. a `pos_embed` that is all zeros (never initialised, so never used) -> RoPE;
  5. a predictor with more than 2 mask tokens -> RoPE (V-JEPA 2 pretraining uses 10 mask
     types, V-JEPA 1 uses 2; released V-JEPA 2 files still carry an unused `pos_embed`);
  6. otherwise V-JEPA 1: `pos_embed` is added to the patch tokens, no RoPE.
An encoder-only V-JEPA 2 file that carries a filled `pos_embed` is indistinguishable from a
V-JEPA 1 file: pass `use_rope=True`. With RoPE, `pos_embed` / `predictor_pos_embed` are dropped.

Defaults when neither an override nor `config.json` gives a value:
  * num_heads: by width from `VIT_SIZES` (192->3, 384->6, 768->12, 1024->16, 1280->16,
    1408->22); other widths need `num_heads=`.
  * predictor_num_heads: RoPE (V-JEPA 2) predictors 12, as V-JEPA 2's hub loader builds them;
    V-JEPA 1 predictors the encoder's head count, as V-JEPA 1's training code builds them.
  * img_size / num_frames: from the `pos_embed` grid for V-JEPA 1 (its sin-cos table shows
    where the second time step starts; otherwise 16 frames are assumed), 256 / 64 for RoPE
    models (V-JEPA 2 release). For RoPE models img_size matters: spatial RoPE positions of
    other resolutions are rescaled to the training grid img_size // patch_size.

Our encoder takes clips as [B, C, T, H, W] (HF `vjepa2` takes [B, T, C, H, W]) or single images
[B, C, H, W], which are repeated to fill one tubelet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from jepa_world.models import VIT_SIZES, EncoderConfig, MaskedPredictor, VisionTransformer
from jepa_world.training.checkpoint import load_checkpoint
from jepa_world.training.cli import UserError

# Hugging Face `vjepa2` name -> released V-JEPA name. Entries ending in "." are prefixes, the
# others whole names. Inside `encoder.layer.{i}.` / `predictor.layer.{i}.` the block parts are
# mapped by HF_BLOCK_MAP. Names follow transformers' modeling_vjepa2 (VJEPA2Model:
# `encoder`, `predictor`) and its conversion script; `position_embeddings` only appears in
# files written by early conversion scripts.
HF_KEY_MAP: dict[str, str] = {
    "encoder.embeddings.patch_embeddings.": "patch_embed.",
    "encoder.embeddings.position_embeddings": "pos_embed",
    "encoder.layer.": "blocks.",
    "encoder.layernorm.": "norm.",
    "predictor.embeddings.predictor_embeddings.": "predictor_embed.",
    "predictor.embeddings.mask_tokens": "mask_tokens",  # [K, 1, 1, P] -> mask_tokens.{k}
    "predictor.embeddings.position_embeddings": "predictor_pos_embed",
    "predictor.layer.": "predictor_blocks.",
    "predictor.layernorm.": "predictor_norm.",
    "predictor.proj.": "predictor_proj.",
}
# Inside one transformer layer. query / key / value are concatenated (in that order) into qkv.
HF_BLOCK_MAP: dict[str, str] = {
    "attention.query.": "attn.qkv.0.",
    "attention.key.": "attn.qkv.1.",
    "attention.value.": "attn.qkv.2.",
    "attention.proj.": "attn.proj.",
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
}
# Prefixes of whole HF models wrapping VJEPA2Model, and heads that are not part of it.
HF_MODEL_PREFIXES = ("vjepa2.",)
HF_IGNORED_PREFIXES = ("pooler.", "classifier.")

WRAPPER_PREFIXES = ("module.", "backbone.")
ENCODER_KEYS = ("target_encoder", "encoder")
OVERRIDES = (
    "img_size",
    "num_frames",
    "num_heads",
    "predictor_num_heads",
    "use_rope",
    "with_predictor",
)
ROPE_IMG_SIZE = 256  # V-JEPA 2 release: 256 px crops ...
ROPE_NUM_FRAMES = 64  # ... and 64-frame clips
VJEPA1_NUM_FRAMES = 16
VJEPA2_PREDICTOR_HEADS = 12
VJEPA1_MAX_MASK_TOKENS = 2
AC_PREDICTOR_KEYS = ("action_encoder.", "state_encoder.", "extrinsics_encoder.")

StateDict = dict[str, Tensor]


def load_vjepa(
    path: str | Path, **overrides: Any
) -> tuple[VisionTransformer, MaskedPredictor | None]:
    """Load a released V-JEPA / V-JEPA 2 / HF `vjepa2` checkpoint as (encoder, predictor).

    Overrides: img_size=, num_frames=, num_heads=, predictor_num_heads=, use_rope=,
    with_predictor=True. The predictor is None when the file has no masked predictor (an
    action-conditioned V-JEPA 2-AC predictor is not one) or with_predictor=False. Weights load
    strictly; any missing, unexpected or mis-shaped weight raises a one-line `UserError` naming
    it. Both models are returned in eval mode on the CPU, in float32.
    """
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise UserError(f"unknown load_vjepa option '{unknown[0]}' (known: {', '.join(OVERRIDES)})")
    path = Path(path)
    state, weights_file = _read(path)
    hf = _is_hf_layout(state)
    if hf:
        enc_sd, pred_sd = _from_hf(state, weights_file)
        config = _read_config(weights_file.parent / "config.json")
    else:
        enc_sd, pred_sd = _from_release(state, weights_file)
        config = {}
    if pred_sd is not None and any(k.startswith(AC_PREDICTOR_KEYS) for k in pred_sd):
        pred_sd = None  # V-JEPA 2-AC: an action-conditioned predictor, not a masked one

    use_rope = _decide_rope(enc_sd, pred_sd, config, hf, overrides.get("use_rope"))
    if use_rope:
        enc_sd.pop("pos_embed", None)
        if pred_sd is not None:
            pred_sd.pop("predictor_pos_embed", None)

    encoder = _build_encoder(enc_sd, config, use_rope, overrides, weights_file)
    _load_strict(encoder, enc_sd, "encoder", weights_file)
    encoder.eval()

    predictor = None
    if pred_sd is not None and overrides.get("with_predictor", True):
        predictor = _build_predictor(pred_sd, encoder, config, use_rope, overrides, weights_file)
        _load_strict(predictor, pred_sd, "predictor", weights_file)
        predictor.eval()
    return encoder, predictor


# ----------------------------------------------------------------------------- reading files


def _read(path: Path) -> tuple[dict[str, Any], Path]:
    """The raw dict in the weights file (or the folder's weights file) and that file's path."""
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                weights = path / name
                break
        else:
            raise UserError(f"no model.safetensors or pytorch_model.bin in folder {path}")
    else:
        weights = path
    if not weights.exists():
        raise UserError(f"checkpoint not found: {weights}")
    if weights.suffix == ".safetensors":
        state = _load_safetensors(weights)
    else:
        state = load_checkpoint(weights)
    if not isinstance(state, Mapping):
        raise UserError(f"checkpoint {weights} holds a {type(state).__name__}, not a dict")
    return dict(state), weights


def _load_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        first = " ".join(str(exc).split())[:160]
        raise UserError(f"checkpoint {path} is corrupt or truncated ({first})") from None


def _read_config(path: Path) -> dict[str, Any]:
    """An HF `vjepa2` config.json next to the weights, or {} when absent or another model's."""
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(config, dict) or config.get("model_type", "vjepa2") != "vjepa2":
        return {}
    return config


# ----------------------------------------------------------------------------- key mapping


def _strip_wrappers(key: str) -> str:
    """Drop DDP (`module.`) and multi-mask wrapper (`backbone.`) prefixes, in any nesting."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _tensors(sd: Mapping[str, Any], what: str, path: Path) -> StateDict:
    out: StateDict = {}
    for key, value in sd.items():
        if not isinstance(value, Tensor):
            raise UserError(f"checkpoint {path}: {what} entry '{key}' is not a tensor")
        out[_strip_wrappers(str(key))] = value
    return out


def _is_hf_layout(state: Mapping[str, Any]) -> bool:
    for key, value in state.items():
        if not isinstance(value, Tensor):
            return False
        key = _strip_hf_model_prefix(key)
        if key.startswith(("encoder.layer.", "encoder.embeddings.", "encoder.layernorm.")):
            return True
    return False


def _strip_hf_model_prefix(key: str) -> str:
    for prefix in HF_MODEL_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _from_release(state: dict[str, Any], path: Path) -> tuple[StateDict, StateDict | None]:
    """Encoder and predictor dicts of a Meta training checkpoint or a flat released state dict."""
    if any(isinstance(v, Mapping) for v in state.values()):
        name = next((k for k in ENCODER_KEYS if isinstance(state.get(k), Mapping)), None)
        if name is None:
            keys = ", ".join(sorted(str(k) for k in state)[:12])
            raise UserError(
                f"checkpoint {path} has no 'target_encoder' or 'encoder' entry (found: {keys})"
            )
        enc = _tensors(state[name], name, path)
        pred = state.get("predictor")
        return enc, (_tensors(pred, "predictor", path) if isinstance(pred, Mapping) else None)
    flat = _tensors(state, "state dict", path)
    pred_keys = [k for k in flat if k.startswith(("predictor_", "mask_tokens."))]
    pred = {k: flat.pop(k) for k in pred_keys} if pred_keys else None
    return flat, pred


def _map_hf_key(key: str) -> str | None:
    """Released name of one HF key (q/k/v as `attn.qkv.{0,1,2}.`), None when unknown."""
    key = key.replace(".attention.attention.", ".attention.")  # early conversion scripts
    for src in sorted(HF_KEY_MAP, key=len, reverse=True):
        dst = HF_KEY_MAP[src]
        if src.endswith("."):
            if not key.startswith(src):
                continue
            rest = key[len(src) :]
            if dst.endswith("blocks."):
                index, _, part = rest.partition(".")
                if not index.isdigit():
                    return None
                for hf_part, ours in HF_BLOCK_MAP.items():
                    if part.startswith(hf_part):
                        return f"{dst}{index}.{ours}{part[len(hf_part) :]}"
                return None
            return dst + rest
        if key == src:
            return dst
    return None


def _from_hf(state: Mapping[str, Tensor], path: Path) -> tuple[StateDict, StateDict | None]:
    """Map an HF `vjepa2` state dict back to the released names; fuse q/k/v, unstack tokens."""
    enc: StateDict = {}
    pred: StateDict = {}
    for raw_key, value in state.items():
        key = _strip_hf_model_prefix(raw_key)
        if key.startswith(HF_IGNORED_PREFIXES):
            continue  # video-classification head, not part of the encoder
        ours = _map_hf_key(key)
        if ours is None:
            raise UserError(f"checkpoint {path}: unknown Hugging Face vjepa2 weight '{raw_key}'")
        target = pred if key.startswith("predictor.") else enc
        if ours == "mask_tokens":
            if value.dim() != 4:
                raise UserError(
                    f"checkpoint {path}: '{raw_key}' has shape {list(value.shape)}, "
                    "expected [num_mask_tokens, 1, 1, width]"
                )
            for k in range(value.shape[0]):
                target[f"mask_tokens.{k}"] = value[k]
        else:
            target[ours] = value
    for sd in (enc, pred):
        _fuse_qkv(sd, path)
    return enc, (pred or None)


def _fuse_qkv(sd: StateDict, path: Path) -> None:
    """Replace `...attn.qkv.{0,1,2}.{weight,bias}` by the released fused `...attn.qkv.*`."""
    groups: dict[str, dict[int, Tensor]] = {}
    for key in [k for k in sd if ".attn.qkv." in k]:
        head, _, tail = key.partition(".attn.qkv.")
        part, _, param = tail.partition(".")
        groups.setdefault(f"{head}.attn.qkv.{param}", {})[int(part)] = sd.pop(key)
    for fused, parts in groups.items():
        for i, name in enumerate(("query", "key", "value")):
            if i not in parts:
                raise UserError(f"checkpoint {path}: attention {name} weight missing for '{fused}'")
        sd[fused] = torch.cat([parts[0], parts[1], parts[2]], dim=0)


# ----------------------------------------------------------------------------- architecture


def _decide_rope(
    enc: StateDict,
    pred: StateDict | None,
    config: Mapping[str, Any],
    hf: bool,
    override: bool | None,
) -> bool:
    """See the module docstring for the rule."""
    if override is not None:
        return bool(override)
    if hf:
        return bool(config.get("use_rope", True))
    pos = enc.get("pos_embed")
    if pos is None or not bool(pos.any()):
        return True
    if pred is not None:
        num_tokens = sum(1 for k in pred if k.startswith("mask_tokens."))
        if num_tokens > VJEPA1_MAX_MASK_TOKENS:
            return True
    return False


def _need(sd: StateDict, key: str, what: str, path: Path) -> Tensor:
    if key not in sd:
        raise UserError(f"checkpoint {path}: {what} weight '{key}' is missing")
    return sd[key]


def _count_blocks(sd: StateDict, prefix: str, what: str, path: Path) -> int:
    indices = {
        int(k[len(prefix) :].split(".", 1)[0])
        for k in sd
        if k.startswith(prefix) and k[len(prefix) :].split(".", 1)[0].isdigit()
    }
    for i in range(len(indices)):
        if i not in indices:
            raise UserError(f"checkpoint {path}: {what} weights '{prefix}{i}.*' are missing")
    if not indices:
        raise UserError(f"checkpoint {path}: no {what} weights '{prefix}0.*'")
    return len(indices)


def _mlp_ratio(sd: StateDict, prefix: str, width: int, what: str, path: Path) -> float:
    """MLP ratio whose int(width * ratio) gives exactly the stored hidden size."""
    hidden = _need(sd, f"{prefix}0.mlp.fc1.weight", what, path).shape[0]
    ratio = hidden / width
    if int(width * ratio) != hidden:
        ratio = (hidden + 0.5) / width
    return ratio


def _default_heads(width: int, path: Path) -> int:
    for size in VIT_SIZES.values():
        if size["embed_dim"] == width:
            return int(size["num_heads"])
    raise UserError(
        f"checkpoint {path}: cannot tell the head count of a width-{width} encoder; pass num_heads="
    )


def _grid_from_pos_embed(
    pos: Tensor, patch: int, tubelet: int, overrides: Mapping[str, Any], path: Path
) -> tuple[int, int]:
    """(img_size, num_frames) whose token grid has as many tokens as `pos_embed` [1, N, D]."""
    n = pos.shape[1]
    img, frames = overrides.get("img_size"), overrides.get("num_frames")
    if img is not None and frames is not None:
        per_frame, t = (img // patch) ** 2, frames // tubelet
    elif img is not None:
        per_frame = (img // patch) ** 2
        t = n // per_frame if per_frame and n % per_frame == 0 else -1
    else:
        if frames is not None:
            t = frames // tubelet
        else:
            t = _time_steps_of_sincos(pos)
            if t is None:
                t = VJEPA1_NUM_FRAMES // tubelet
        per_frame = n // t if t > 0 and n % t == 0 else -1
    side = math.isqrt(per_frame) if per_frame > 0 else 0
    if t <= 0 or side * side != per_frame or t * per_frame != n:
        raise UserError(
            f"checkpoint {path}: encoder weight 'pos_embed' has {n} tokens, which fits no "
            f"square grid for img_size={img}, num_frames={frames} (patch {patch}, tubelet "
            f"{tubelet}); pass matching img_size= and num_frames="
        )
    return side * patch, t * tubelet


def _time_steps_of_sincos(pos: Tensor) -> int | None:
    """Time steps of a fixed 3D sin-cos table, or None when `pos` is not one.

    Its first channel is sin(t) (the time part comes first, lowest frequency 1), so it is
    zero for exactly the tokens of the first time step.
    """
    col = pos[0, :, 0].float().abs()
    nonzero = torch.nonzero(col > 1e-4)
    if nonzero.numel() == 0:
        return 1
    per_frame = int(nonzero[0, 0])
    n = col.shape[0]
    if per_frame == 0 or n % per_frame or math.isqrt(per_frame) ** 2 != per_frame:
        return None
    return n // per_frame


def _build_encoder(
    sd: StateDict,
    config: Mapping[str, Any],
    use_rope: bool,
    overrides: Mapping[str, Any],
    path: Path,
) -> VisionTransformer:
    weight = _need(sd, "patch_embed.proj.weight", "encoder", path)
    if weight.dim() != 5:
        raise UserError(
            f"checkpoint {path}: encoder weight 'patch_embed.proj.weight' has shape "
            f"{list(weight.shape)}; expected a Conv3d tubelet kernel [D, C, t, p, p]"
        )
    width, in_chans, tubelet, patch = (int(s) for s in weight.shape[:4])
    width = int(config.get("hidden_size", width))
    patch = int(config.get("patch_size", patch))
    tubelet = int(config.get("tubelet_size", tubelet))
    in_chans = int(config.get("in_chans", in_chans))
    depth = int(config.get("num_hidden_layers", 0)) or _count_blocks(sd, "blocks.", "encoder", path)
    mlp_ratio = _mlp_ratio(sd, "blocks.", width, "encoder", path)
    num_heads = overrides.get("num_heads") or config.get("num_attention_heads")
    num_heads = int(num_heads) if num_heads else _default_heads(width, path)

    pos = sd.get("pos_embed")
    if not use_rope and pos is not None:
        if pos.dim() != 3:
            raise UserError(
                f"checkpoint {path}: encoder weight 'pos_embed' has shape {list(pos.shape)}, "
                "expected [1, N, D]"
            )
        img_size, num_frames = _grid_from_pos_embed(pos, patch, tubelet, overrides, path)
    else:
        img_size = int(overrides.get("img_size") or config.get("crop_size") or ROPE_IMG_SIZE)
        num_frames = int(
            overrides.get("num_frames") or config.get("frames_per_clip") or ROPE_NUM_FRAMES
        )
    kwargs = dict(
        img_size=img_size,
        patch_size=patch,
        num_frames=num_frames,
        tubelet_size=tubelet,
        in_chans=in_chans,
        embed_dim=width,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        qkv_bias="blocks.0.attn.qkv.bias" in sd,
        use_rope=use_rope,
    )
    try:
        return VisionTransformer(EncoderConfig(**kwargs))
    except ValueError as exc:
        raise UserError(f"checkpoint {path}: cannot build the encoder: {exc}") from None


def _build_predictor(
    sd: StateDict,
    encoder: VisionTransformer,
    config: Mapping[str, Any],
    use_rope: bool,
    overrides: Mapping[str, Any],
    path: Path,
) -> MaskedPredictor:
    embed = _need(sd, "predictor_embed.weight", "predictor", path)
    width = int(config.get("pred_hidden_size", embed.shape[0]))
    depth = int(config.get("pred_num_hidden_layers", 0)) or _count_blocks(
        sd, "predictor_blocks.", "predictor", path
    )
    num_tokens = sum(1 for k in sd if k.startswith("mask_tokens."))
    num_tokens = int(config.get("pred_num_mask_tokens", 0)) or num_tokens
    if num_tokens < 1:
        raise UserError(f"checkpoint {path}: predictor weight 'mask_tokens.0' is missing")
    heads = overrides.get("predictor_num_heads") or config.get("pred_num_attention_heads")
    if not heads:
        heads = VJEPA2_PREDICTOR_HEADS if use_rope else encoder.num_heads
    if width % int(heads):
        raise UserError(
            f"checkpoint {path}: predictor width {width} is not divisible by {heads} heads; "
            "pass predictor_num_heads="
        )
    t, h, _ = encoder.grid_size
    kwargs = dict(
        embed_dim=encoder.embed_dim,
        predictor_embed_dim=width,
        depth=depth,
        num_heads=int(heads),
        img_size=h * encoder.patch_size,
        patch_size=encoder.patch_size,
        num_frames=t * encoder.tubelet_size,
        tubelet_size=encoder.tubelet_size,
        mlp_ratio=_mlp_ratio(sd, "predictor_blocks.", width, "predictor", path),
        num_mask_tokens=num_tokens,
        use_rope=use_rope,
    )
    try:
        return MaskedPredictor(**kwargs)
    except ValueError as exc:
        raise UserError(f"checkpoint {path}: cannot build the predictor: {exc}") from None


def _load_strict(model: torch.nn.Module, sd: StateDict, what: str, path: Path) -> None:
    """load_state_dict(strict=True), with a one-line error naming the first offending key."""
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in sd:
            raise UserError(f"checkpoint {path}: {what} weight '{key}' is missing")
        if tuple(sd[key].shape) != tuple(value.shape):
            raise UserError(
                f"checkpoint {path}: {what} weight '{key}' has shape {list(sd[key].shape)} but "
                f"the inferred architecture expects {list(value.shape)} (check num_heads=, "
                "img_size=, num_frames=)"
            )
    for key in sd:
        if key not in expected:
            raise UserError(
                f"checkpoint {path}: unexpected {what} weight '{key}' (not part of a "
                "V-JEPA ViT of this shape)"
            )
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
