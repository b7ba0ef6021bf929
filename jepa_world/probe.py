"""Frozen evaluation: V-JEPA's attentive probe on a frozen encoder, against a random encoder.

    python -m jepa_world.probe checkpoint=runs/pretrain data.train=data/reach
    python -m jepa_world.probe task=classification data.index_train=train.txt \
        data.index_val=val.txt
    python -m jepa_world.probe released=true checkpoint=vitl16.pth task=classification ...

Features of the frozen encoder are computed once per sample (eval mode, no grad) and kept in
memory; the probe (one learned query token, one cross-attention block, LayerNorm, Linear) then
trains on them, which is fast even on a CPU. The same probe is trained on the features of a
randomly initialised encoder of the same architecture, so the report says how much of the score
comes from pretraining rather than from the architecture and the probe alone.

Tasks
- regression: recorded states of a trajectory dataset (``python -m envs.collect``) from single
  frames (or short clips ending at the frame); R^2 per target on held-out episodes.
- classification: clips of the videos of a V-JEPA index file (``path label`` per line);
  top-1 accuracy.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from torch import Tensor, nn

from envs.dataset_format import write_json_atomic
from jepa_world.data.episodes import DatasetError, EpisodeDataset
from jepa_world.data.video import ClipSpec, CorpusError, UnreadableVideoWarning, VideoClipDataset
from jepa_world.encoders import RELEASED_FRAME_STEP, LoadedEncoder, fresh_like, load_encoder
from jepa_world.models import VisionTransformer
from jepa_world.models.vit import LN_EPS
from jepa_world.schemas.probe import CACHE_DTYPES as CACHE_DTYPE_NAMES
from jepa_world.schemas.probe import ProbeConfig
from jepa_world.training.cli import UserError, load_config, run_command, typed_config
from jepa_world.training.optim import make_adamw, set_lr_and_wd
from jepa_world.training.runtime import Runtime, resolve_device
from jepa_world.training.schedules import warmup_cosine

CACHE_DTYPES = {name: getattr(torch, name) for name in CACHE_DTYPE_NAMES}


# ------------------------------------------------------------------------------ the probe
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


@dataclass
class ProbeSettings:
    """Optimisation of one probe (the ``probe`` section of the config)."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    num_heads: int = 4
    mlp_ratio: float = 4.0
    cpu_threads: int | None = 1  # torch threads while training on the CPU; None: unchanged


def train_probe(
    features: Tensor,
    targets: Tensor,
    task: str,
    num_outputs: int,
    settings: ProbeSettings,
    seed: int,
    device: torch.device | str = "cpu",
    desc: str = "probe",
    progress: bool = False,
) -> tuple[AttentiveProbe, float]:
    """Train a probe on cached tokens [N, K, D]; returns it (eval mode) and the last loss.

    Regression targets [N, M] are expected standardised (MSE); classification targets are class
    ids [N] (cross-entropy). Batches and init depend only on ``seed``: reruns are identical.
    The probe is small: on the CPU extra threads mostly wait on each other (``cpu_threads``).
    """
    device = torch.device(device)
    threads = torch.get_num_threads()
    if device.type == "cpu" and settings.cpu_threads:
        torch.set_num_threads(settings.cpu_threads)
    try:
        return _train_probe(
            features, targets, task, num_outputs, settings, seed, device, desc, progress
        )
    finally:
        torch.set_num_threads(threads)


def _train_probe(
    features: Tensor,
    targets: Tensor,
    task: str,
    num_outputs: int,
    settings: ProbeSettings,
    seed: int,
    device: torch.device,
    desc: str,
    progress: bool,
) -> tuple[AttentiveProbe, float]:
    from tqdm import tqdm

    torch.manual_seed(seed)
    probe = AttentiveProbe(
        features.shape[-1], num_outputs, settings.num_heads, settings.mlp_ratio
    ).to(device)
    optimizer = make_adamw([probe], lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = features.shape[0]
    batch = min(settings.batch_size, n)
    order, pos = torch.randperm(n, generator=generator), 0
    loss_value = float("nan")
    probe.train()
    with tqdm(
        total=settings.steps,
        desc=desc,
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    ) as bar:
        for step in range(settings.steps):
            if pos + batch > n:
                order, pos = torch.randperm(n, generator=generator), 0
            idx = order[pos : pos + batch]
            pos += batch
            lr = warmup_cosine(step, settings.steps, settings.warmup_steps, 0.0, settings.lr, 0.0)
            set_lr_and_wd(optimizer, lr, settings.weight_decay)
            out = probe(features[idx].to(device, torch.float32))
            y = targets[idx].to(device)
            loss = F.mse_loss(out, y) if task == "regression" else F.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())
            if step % 20 == 0 or step + 1 == settings.steps:
                bar.set_postfix(loss=f"{loss_value:.4f}")
            bar.update(1)
    if not math.isfinite(loss_value) and settings.steps > 0:
        raise UserError(f"probe loss is {loss_value}: lower probe.lr (now {settings.lr})")
    return probe.eval(), loss_value


@torch.no_grad()
def predict(
    probe: AttentiveProbe, features: Tensor, batch_size: int = 256, device: Any = "cpu"
) -> Tensor:
    """Probe outputs [N, out_dim] (float32, CPU) for cached tokens [N, K, D]."""
    probe.eval()
    outs = [
        probe(features[i : i + batch_size].to(device, torch.float32)).float().cpu()
        for i in range(0, features.shape[0], batch_size)
    ]
    return torch.cat(outs) if outs else torch.zeros(0, probe.head.out_features)


def r2_scores(targets: Tensor, predictions: Tensor) -> Tensor:
    """Coefficient of determination per column; NaN where the targets do not vary."""
    y, p = targets.double(), predictions.double()
    ss_res = ((y - p) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    r2 = 1.0 - ss_res / ss_tot
    return torch.where(ss_tot > 0, r2, torch.full_like(r2, float("nan")))


# ------------------------------------------------------------------------------- targets
def frame_arrays(data: EpisodeDataset) -> list[str]:
    """Per-frame arrays a dataset can be probed on: proprio and the task's state arrays."""
    return ["proprio", *data.state_keys]


def target_values(name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """One target group as [T+1, k] (state arrays of any shape are flattened per frame)."""
    values = np.asarray(arrays[name])
    return values.reshape(len(values), -1)


def target_names(name: str, arrays: dict[str, np.ndarray]) -> list[str]:
    """Column names of one target group (e.g. fingertip -> fingertip0, fingertip1)."""
    return [f"{name}{j}" for j in range(target_values(name, arrays).shape[1])]


def resolve_targets(names: list[str] | None, datasets: list[EpisodeDataset]) -> list[str]:
    """The targets to probe: the given names, or the task's defaults recorded in the data."""
    if names is None:
        names = datasets[0].probe_targets
    if not names:
        raise UserError("targets is empty: give targets=[NAME,...] (a dataset's state arrays)")
    for data in datasets:
        known = frame_arrays(data)
        for name in names:
            if name not in known:
                raise UserError(
                    f"unknown target '{name}' for {data.root} (recorded in {data.env_id}; "
                    f"known: {', '.join(known)})"
                )
    return list(names)


def extract_features(
    encoders: dict[str, VisionTransformer],
    inputs: Iterable[Tensor],
    total: int,
    rt: Runtime,
    bf16: bool = True,
    cache_dtype: torch.dtype = torch.float32,
    progress: bool = False,
    pool: tuple[int, int] | None = None,
) -> dict[str, Tensor]:
    """Tokens [N, K, D] of every encoder for every input batch, decoded once for all encoders;
    with ``pool``, each frame's layer-normed tokens averaged to that grid (as a world model's
    latent is)."""
    from tqdm import tqdm

    parts: dict[str, list[Tensor]] = {name: [] for name in encoders}
    for encoder in encoders.values():
        encoder.to(rt.device).eval()
    with tqdm(
        total=total,
        desc="features",
        unit="sample",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    ) as bar:
        for x in inputs:
            x = x.to(rt.device)
            for name, encoder in encoders.items():
                with rt.autocast(bf16):
                    tokens = encoder(x)
                if pool is not None:
                    tokens = pool_tokens(tokens, encoder, x.shape[-1], pool)
                parts[name].append(tokens.to("cpu", cache_dtype))
            bar.update(x.shape[0])
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


# --------------------------------------------------------------------------------- inputs
def pool_tokens(
    tokens: Tensor, encoder: VisionTransformer, resolution: int, pool: tuple[int, int]
) -> Tensor:
    """Layer-norm tokens [B, t*gh*gw, D] and average each time slot's grid to ``pool``."""
    side = resolution // encoder.config.patch_size
    batch, count, dim = tokens.shape
    if count % (side * side) or side % pool[0] or side % pool[1]:
        raise UserError(f"pool {list(pool)} does not divide the {side}x{side} token grid")
    slots = count // (side * side)
    grid = F.layer_norm(tokens.float(), (dim,), eps=LN_EPS)
    grid = grid.reshape(batch * slots, side, side, dim).permute(0, 3, 1, 2)
    grid = F.adaptive_avg_pool2d(grid, pool)
    return grid.permute(0, 2, 3, 1).reshape(batch, slots * pool[0] * pool[1], dim)


def prepare_frames(frames: np.ndarray | Tensor, resolution: int) -> Tensor:
    """uint8 frames [..., H, W, 3] -> normalised float [..., 3, R, R] as the encoder saw them.

    Centre square, resized to the encoder's resolution, ImageNet mean / std: the normalisation
    of the pretraining clip loader (``ClipSpec``'s defaults).
    """
    x = torch.as_tensor(frames)
    lead = x.shape[:-3]
    h, w = x.shape[-3:-1]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side, :].reshape(-1, side, side, 3)
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if side != resolution:
        x = F.interpolate(
            x,
            size=(resolution, resolution),
            mode="bilinear",
            align_corners=False,
            antialias=side > resolution,
        )
    spec = ClipSpec()
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.reshape(*lead, 3, resolution, resolution)


@dataclass
class ClipShape:
    """What one sample looks like to the encoder."""

    frames: int  # 1: a single image
    frame_step: int
    resolution: int


def _clip_shape(cfg: ProbeConfig, frozen: LoadedEncoder, task: str) -> ClipShape:
    encoder = frozen.encoder
    default_frames = 1 if task == "regression" else encoder.num_frames
    frames = cfg.data.frames_per_clip or default_frames
    step = cfg.data.frame_step or frozen.frame_step or RELEASED_FRAME_STEP
    res = cfg.data.resolution or encoder.img_size
    if frames > 1 and frames % encoder.tubelet_size:
        raise UserError(
            f"data.frames_per_clip={frames} is not a multiple of the encoder's tubelet size "
            f"{encoder.tubelet_size} (use 1 for single images)"
        )
    if res % encoder.patch_size:
        raise UserError(
            f"data.resolution={res} is not a multiple of the encoder's patch size "
            f"{encoder.patch_size}"
        )
    return ClipShape(frames, step, res)


# ------------------------------------------------------------------------ regression data
@dataclass
class RegressionSplit:
    """Episodes and frames of one side of the split, with their targets."""

    episodes: list[tuple[int, int]]  # (dataset, episode)
    frames: list[np.ndarray]  # per episode: the labelled frame indices
    targets: Tensor  # [N, M] float32

    @property
    def size(self) -> int:
        return int(self.targets.shape[0])


def open_datasets(paths: list[str]) -> list[EpisodeDataset]:
    """Open dataset folders, turning any missing / corrupt one into a one-line error."""
    try:
        return [EpisodeDataset(p) for p in paths]
    except DatasetError as exc:
        raise UserError(str(exc)) from None


def split_episodes(
    counts: list[int], val_fraction: float, seed: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Hold out whole episodes: (dataset, episode) pairs for train and val, each sorted."""
    pairs = [(d, e) for d, n in enumerate(counts) for e in range(n)]
    if len(pairs) < 2:
        raise UserError(
            f"only {len(pairs)} episode(s) to split into train and val: record more or give "
            "data.val=DIR"
        )
    if not 0 < val_fraction < 1:
        raise UserError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    n_val = min(len(pairs) - 1, max(1, round(len(pairs) * val_fraction)))
    order = np.random.default_rng(seed).permutation(len(pairs))
    val = sorted(pairs[i] for i in order[:n_val])
    train = sorted(pairs[i] for i in order[n_val:])
    return train, val


def _regression_split(
    datasets: list[EpisodeDataset],
    pairs: list[tuple[int, int]],
    targets: list[str],
    shape: ClipShape,
    stride: int,
) -> RegressionSplit:
    first = (shape.frames - 1) * shape.frame_step  # a clip ends at its labelled frame
    frames, values = [], []
    for d, e in pairs:
        arrays = datasets[d].arrays(e)
        idx = np.arange(first, int(datasets[d].lengths[e]) + 1, stride)
        frames.append(idx)
        values.append(np.concatenate([target_values(t, arrays)[idx] for t in targets], axis=1))
    if not sum(len(f) for f in frames):
        raise UserError(
            f"no frame can end a clip of {shape.frames} frames every {shape.frame_step} steps"
        )
    y = torch.from_numpy(np.concatenate(values).astype(np.float32))
    return RegressionSplit(pairs, frames, y)


def _regression_inputs(
    datasets: list[EpisodeDataset], split: RegressionSplit, shape: ClipShape, batch: int
) -> Iterator[Tensor]:
    """Encoder inputs of a split, episode by episode: [B,3,R,R] images or [B,3,T,R,R] clips."""
    offsets = shape.frame_step * np.arange(shape.frames - 1, -1, -1)
    for (d, e), idx in zip(split.episodes, split.frames, strict=True):
        if not len(idx):
            continue
        needed = np.unique(np.concatenate([idx - o for o in offsets]))
        decoded = prepare_frames(datasets[d].frames(e, needed), shape.resolution)
        where = {int(f): i for i, f in enumerate(needed)}
        for lo in range(0, len(idx), batch):
            chunk = idx[lo : lo + batch]
            if shape.frames == 1:
                yield decoded[[where[int(f)] for f in chunk]]
            else:
                rows = [[where[int(f - o)] for o in offsets] for f in chunk]
                yield decoded[torch.tensor(rows)].permute(0, 2, 1, 3, 4)  # [B,3,T,R,R]


# -------------------------------------------------------------------- classification data
@dataclass
class LabelledVideos:
    """The videos of an index file and their labels, in file order."""

    index: Path
    paths: list[Path]
    labels: list[str]


def read_labelled_index(index: str | Path) -> LabelledVideos:
    """Parse a V-JEPA index file (``path label`` per line) and check that every video exists.

    Same rules as the pretraining loader: blank and ``#`` lines skipped, the label is the last
    field (so paths may hold spaces), relative paths are resolved against the file's folder.
    """
    index = Path(index).expanduser()
    if not index.is_file():
        raise UserError(f"index file not found: {index}")
    paths, labels = [], []
    try:
        lines = index.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read index file {index}: {type(exc).__name__}") from None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise UserError(f"{index}:{number}: expected 'path label', got '{line[:80]}'")
        path = Path(parts[0]).expanduser()
        path = path if path.is_absolute() else index.parent / path
        if not path.is_file():
            raise UserError(f"{index}:{number}: video not found: {path}")
        paths.append(path)
        labels.append(parts[1])
    if not paths:
        raise UserError(f"index file {index} lists no videos")
    return LabelledVideos(index, paths, labels)


def class_names(labels: Iterable[str]) -> list[str]:
    """Sorted distinct labels: numerically when every label is an integer (K400 / SSv2 ids)."""
    distinct = set(labels)
    if all(label.lstrip("-").isdigit() for label in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


class _IndexClips(torch.utils.data.Dataset):
    """Deterministic centre clips of listed videos; an unreadable video is an error (the
    pretraining loader would silently substitute another video, and so another label)."""

    def __init__(self, videos: LabelledVideos, shape: ClipShape) -> None:
        spec = ClipSpec(
            frames_per_clip=shape.frames,
            frame_step=shape.frame_step,
            resolution=shape.resolution,
            train=False,
        )
        # One source per video: item i is exactly line i of the index file.
        self.clips = VideoClipDataset([str(p) for p in videos.paths], spec)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> Tensor:
        path = str(self.clips.paths[i])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnreadableVideoWarning)
            try:
                item = self.clips.get(i, epoch=0)
            except CorpusError:
                item = {"path": None}
        if item["path"] != path:
            reason = next((str(w.message) for w in caught if path in str(w.message)), "")
            reason = reason.split(f"{path}: ", 1)[-1] if reason else "unreadable"
            raise CorpusError(f"cannot decode video {path}: {reason}")
        return item["video"]


def _classification_inputs(
    videos: LabelledVideos, shape: ClipShape, batch: int, workers: int
) -> Iterator[Tensor]:
    loader = torch.utils.data.DataLoader(
        _IndexClips(videos, shape), batch_size=batch, shuffle=False, num_workers=workers
    )
    batches, message = iter(loader), None
    try:
        for clips in batches:  # [B, 3, T, R, R]
            yield clips[:, :, 0] if clips.shape[2] == 1 else clips  # one frame: an image
    except CorpusError as exc:  # possibly raised in a worker, with its traceback in the message
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        message = lines[-1].split("CorpusError: ", 1)[-1]
    finally:
        del batches  # stops the workers now, not whenever the error is garbage collected
    if message is not None:
        raise UserError(message)


# ---------------------------------------------------------------------------- evaluation
def _probe_settings(cfg: ProbeConfig, encoder: VisionTransformer) -> ProbeSettings:
    p = cfg.probe
    settings = ProbeSettings(
        steps=p.steps,
        batch_size=p.batch_size,
        lr=p.lr,
        warmup_steps=p.warmup_steps,
        weight_decay=p.weight_decay,
        num_heads=p.num_heads or encoder.num_heads,
        mlp_ratio=p.mlp_ratio,
        cpu_threads=p.cpu_threads,
    )
    if encoder.embed_dim % settings.num_heads:
        raise UserError(
            f"probe.num_heads={settings.num_heads} does not divide the encoder width "
            f"{encoder.embed_dim}"
        )
    return settings


@dataclass
class ProbeData:
    """Cached features of every encoder and the targets, for both sides of the split."""

    train: dict[str, Tensor]  # encoder name -> tokens [N, K, D]
    val: dict[str, Tensor]
    y_train: Tensor  # regression: [N, M] float; classification: class ids [N]
    y_val: Tensor
    info: dict[str, Any]  # what the report and the JSON say about the data
    names: list[str]  # target columns, or class names


def _open_regression(cfg: ProbeConfig) -> tuple[list[EpisodeDataset], list[EpisodeDataset]]:
    train_sets = open_datasets(cfg.data.train)
    val_sets = open_datasets(cfg.data.val)
    cfg.targets = resolve_targets(cfg.targets, train_sets + val_sets)
    return train_sets, val_sets


def _regression_data(
    cfg: ProbeConfig,
    sources: tuple[list[EpisodeDataset], list[EpisodeDataset]],
    encoders: dict[str, VisionTransformer],
    shape: ClipShape,
    batch: int,
    extract: dict[str, Any],
) -> ProbeData:
    train_sets, val_sets = sources
    datasets = train_sets + val_sets
    if val_sets:
        n = len(train_sets)
        train_pairs = [(d, e) for d in range(n) for e in range(len(datasets[d]))]
        val_pairs = [(d, e) for d in range(n, len(datasets)) for e in range(len(datasets[d]))]
    else:
        train_pairs, val_pairs = split_episodes(
            [len(d) for d in datasets], cfg.data.val_fraction, cfg.data.split_seed
        )
    targets, stride = cfg.targets, cfg.data.frame_stride
    try:
        train = _regression_split(datasets, train_pairs, targets, shape, stride)
        val = _regression_split(datasets, val_pairs, targets, shape, stride)
        features = [
            extract_features(
                encoders, _regression_inputs(datasets, side, shape, batch), side.size, **extract
            )
            for side in (train, val)
        ]
    except DatasetError as exc:
        raise UserError(str(exc)) from None
    arrays = datasets[0].arrays(0)
    info = {
        "train": [str(d.root) for d in train_sets],
        "val": [str(d.root) for d in val_sets] or None,
        "train_samples": train.size,
        "val_samples": val.size,
        "train_episodes": [f"{datasets[d].root}:{e}" for d, e in train_pairs],
        "val_episodes": [f"{datasets[d].root}:{e}" for d, e in val_pairs],
    }
    names = [n for t in targets for n in target_names(t, arrays)]
    return ProbeData(*features, train.targets, val.targets, info, names)


def _open_classification(cfg: ProbeConfig) -> tuple[LabelledVideos, LabelledVideos]:
    train = read_labelled_index(cfg.data.index_train)
    if cfg.data.index_val:
        return train, read_labelled_index(cfg.data.index_val)
    return _split_index(train, cfg.data.val_fraction, cfg.data.split_seed)


def _classification_data(
    cfg: ProbeConfig,
    sources: tuple[LabelledVideos, LabelledVideos],
    encoders: dict[str, VisionTransformer],
    shape: ClipShape,
    batch: int,
    extract: dict[str, Any],
) -> ProbeData:
    train, val = sources
    classes = class_names(train.labels)
    unseen = sorted(set(val.labels) - set(classes))
    if unseen:
        raise UserError(f"label '{unseen[0]}' of {val.index} never occurs in {train.index}")
    ids = {c: i for i, c in enumerate(classes)}
    workers = cfg.data.num_workers
    features = [
        extract_features(
            encoders,
            _classification_inputs(side, shape, batch, workers),
            len(side.paths),
            **extract,
        )
        for side in (train, val)
    ]
    y_train = torch.tensor([ids[label] for label in train.labels])
    y_val = torch.tensor([ids[label] for label in val.labels])
    counts = np.bincount(y_val.numpy(), minlength=len(classes))
    info = {
        "index_train": str(train.index),
        "index_val": str(val.index),
        "train_samples": len(train.paths),
        "val_samples": len(val.paths),
        "classes": classes,
        "chance": float(counts.max() / counts.sum()),  # always guessing the commonest class
    }
    return ProbeData(*features, y_train, y_val, info, classes)


def _split_index(
    videos: LabelledVideos, fraction: float, seed: int
) -> tuple[LabelledVideos, LabelledVideos]:
    """Hold out ``fraction`` of an index file's lines (chosen by ``seed``)."""
    n = len(videos.paths)
    if n < 2 or not 0 < fraction < 1:
        raise UserError(
            f"cannot hold out data.val_fraction={fraction} of {n} video(s) in {videos.index}: "
            "give data.index_val=INDEX_FILE"
        )
    n_val = min(n - 1, max(1, round(n * fraction)))
    order = np.random.default_rng(seed).permutation(n)

    def side(chosen: Iterable[int]) -> LabelledVideos:
        chosen = sorted(int(i) for i in chosen)
        return LabelledVideos(
            videos.index, [videos.paths[i] for i in chosen], [videos.labels[i] for i in chosen]
        )

    return side(order[n_val:]), side(order[:n_val])


def fit_and_score(
    data: ProbeData,
    name: str,
    task: str,
    settings: ProbeSettings,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Train a probe on one encoder's cached features and score it on both splits.

    Regression targets are standardised with the train split's mean / std for training (so
    every target weighs the same in the loss); R^2 is computed in the targets' own units.
    """
    started = time.perf_counter()
    if task == "regression":
        mean, std = data.y_train.mean(0), data.y_train.std(0, unbiased=False)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        fit, outputs = (data.y_train - mean) / std, data.y_train.shape[1]
    else:
        fit, outputs = data.y_train, len(data.names)
    probe, loss = train_probe(
        data.train[name],
        fit,
        task,
        outputs,
        settings,
        seed,
        device,
        desc=f"probe {name}",
        progress=progress,
    )
    pred_val = predict(probe, data.val[name], device=device)
    pred_train = predict(probe, data.train[name], device=device)
    if task == "regression":
        r2_val = r2_scores(data.y_val, pred_val * std + mean)
        result = {
            "mean_r2": _nanmean(r2_val),
            "r2": {n: float(v) for n, v in zip(data.names, r2_val, strict=True)},
            "train_mean_r2": _nanmean(r2_scores(data.y_train, pred_train * std + mean)),
        }
    else:
        result = {
            "accuracy": float((pred_val.argmax(1) == data.y_val).float().mean()),
            "train_accuracy": float((pred_train.argmax(1) == data.y_train).float().mean()),
        }
    return {**result, "final_loss": loss, "probe_seconds": time.perf_counter() - started}


def _nanmean(values: Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else float("nan")


def evaluate(cfg: ProbeConfig | Any) -> dict[str, Any]:
    """Run the whole frozen evaluation that ``cfg`` (the schema, or a composed config checked
    against it here) describes; returns the metrics summary."""
    if not isinstance(cfg, ProbeConfig):
        cfg = typed_config(ProbeConfig, cfg)
    task = cfg.task
    rt = Runtime(resolve_device(cfg.device))
    seed, progress = cfg.seed, cfg.progress
    # Data first: bad paths and index files fail before the encoder is loaded.
    sources = _open_regression(cfg) if task == "regression" else _open_classification(cfg)
    frozen = load_encoder(cfg.checkpoint, released=cfg.released, key=cfg.key)
    encoder = frozen.encoder
    settings = _probe_settings(cfg, encoder)
    shape = _clip_shape(cfg, frozen, task)
    encoders = {"pretrained": encoder}
    if cfg.compare_random:
        encoders["random"] = fresh_like(encoder, seed)

    started = time.perf_counter()
    extract = dict(
        rt=rt,
        bf16=cfg.bf16,
        progress=progress,
        cache_dtype=CACHE_DTYPES[cfg.probe.cache_dtype],
        pool=tuple(cfg.pool) if cfg.pool else None,
    )
    build = _regression_data if task == "regression" else _classification_data
    data = build(cfg, sources, encoders, shape, cfg.probe.encode_batch_size, extract)
    feature_seconds = time.perf_counter() - started
    results = {
        name: fit_and_score(data, name, task, settings, seed, rt.device, progress)
        for name in encoders
    }

    metric = "mean_r2" if task == "regression" else "accuracy"
    gap = None
    if "random" in results:
        gap = results["pretrained"][metric] - results["random"][metric]
    summary: dict[str, Any] = {
        "task": task,
        "metric": metric,
        "checkpoint": frozen.source,
        "encoder": {
            "size": frozen.name,
            "embed_dim": encoder.embed_dim,
            "depth": encoder.depth,
            "tokens_per_sample": int(data.val["pretrained"].shape[1]),
            "frames_per_sample": shape.frames,
            "frame_step": shape.frame_step,
            "resolution": shape.resolution,
            "pool": cfg.pool,
        },
        "probe": dict(settings.__dict__),
        "seed": seed,
        "data": data.info,
        "results": results,
        "gap": gap,
        "feature_seconds": feature_seconds,
    }
    if task == "regression":
        summary["targets"] = data.names
    return summary


# -------------------------------------------------------------------------------- report
def format_report(summary: dict[str, Any]) -> str:
    """The one-screen table: encoder | metric | value for pretrained vs random, and the gap."""
    task, metric, results = summary["task"], summary["metric"], summary["results"]
    enc, data = summary["encoder"], summary["data"]
    label = "mean R^2 (val)" if task == "regression" else "top-1 accuracy (val)"
    what = "image" if enc["frames_per_sample"] == 1 else f"{enc['frames_per_sample']}-frame clip"
    lines = [
        f"probe: {task}, {data['train_samples']} train / {data['val_samples']} val samples "
        f"({what} at {enc['resolution']} px, {enc['tokens_per_sample']} tokens each), "
        f"{summary['probe']['steps']} probe steps, seed {summary['seed']}",
        f"encoder: {enc['size']} ({enc['embed_dim']} wide, {enc['depth']} deep) "
        f"from {summary['checkpoint']}",
        "",
        f"{'encoder':<12} {'metric':<22} {'value':>8}",
    ]
    for name, res in results.items():
        lines.append(f"{name:<12} {label:<22} {res[metric]:>8.3f}")
    if summary["gap"] is not None:
        lines.append(f"{'gap':<12} {label:<22} {summary['gap']:>+8.3f}")
    if task == "classification":
        lines.append(f"{'chance':<12} {'majority class (val)':<22} {data['chance']:>8.3f}")
    else:
        lines += ["", f"{'target (val R^2)':<18}" + "".join(f"{n:>12}" for n in results)]
        for target in summary["targets"]:
            lines.append(
                f"{target:<18}" + "".join(f"{r['r2'][target]:>12.3f}" for r in results.values())
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    cfg = typed_config(ProbeConfig, load_config("probe", argv))
    summary = evaluate(cfg)
    print(format_report(summary))
    if cfg.json:
        path = Path(cfg.json).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, {**summary, "config": asdict(cfg)})
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        print(f"metrics: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_command(main)
