"""Video clips for self-supervised (V-JEPA style) pretraining.

A corpus is one or more *sources*: folders of videos, single video files or V-JEPA index files
(`path label` per line). `VideoClipDataset` turns every discovered video into one item: a clip of
`frames_per_clip` frames taken every `frame_step` frames, with one random resized crop and flip
shared by all frames, normalised to a float tensor [3, T, H, W].

Design choices worth knowing:

- Files are opened lazily, never all at construction: corpora can hold millions of videos.
- Broken files (missing, tiny, truncated, undecodable) are skipped by retrying another index
  (from the same source first, so mixing weights hold), warned about once and counted. A bounded
  number of distinct files is tried before `CorpusError` is raised, so a corpus with nothing
  readable fails loudly instead of looping forever.
- All randomness of an item comes from an RNG seeded by (seed, epoch, index, attempt), so a clip
  does not depend on the DataLoader worker count or order. Pretraining draws its batches with
  `StepBatchSampler`, whose indices carry the step as the epoch, so a resumed run sees exactly
  the clips of an uninterrupted one. The bad-file flags and the cached frame sizes live in
  shared-memory tensors so that workers share what they learn about files.
- When the output resolution is much smaller than the source, frames are decoded small by decord
  (one resize inside ffmpeg) at a size chosen so that even the smallest possible crop keeps at
  least `resolution` pixels per side; the crop box is computed in source pixels, so the crop
  distribution does not change.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import decord
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = [
    "INDEX_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ClipSpec",
    "CorpusError",
    "UnreadableVideoWarning",
    "VideoClipDataset",
    "StepBatchSampler",
    "StepClips",
    "discover_videos",
    "make_step_loader",
    "parse_index",
    "video_probabilities",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
INDEX_EXTENSIONS = (".txt", ".csv")
MIN_VIDEO_BYTES = 1024  # smaller files cannot hold a decodable video (V-JEPA skips them too)
MAX_DISTINCT_TRIES = 50  # distinct files tried for one item before declaring the corpus unreadable
# Decode small only when it saves a real amount of work: a reduced decode costs a second open
# the first time a file is seen (its size must be known first).
_DECODE_SMALL_BELOW = 0.8
# Output widths for which decord 0.6.0's resizing decoder returns mis-sized buffers (measured on
# several sources and heights; every other width up to 1300 worked). Avoided by widening by 1.
_DECORD_BAD_WIDTHS = frozenset({1, 2, 3, 4, 6, 8, 12, 16, 24, 48, 72})

decord.bridge.set_bridge("native")

# File status flags kept in shared memory.
_UNKNOWN, _OK, _BAD = 0, 1, 2


class CorpusError(ValueError):
    """Raised when a corpus has nothing readable or a path is missing (one line naming it)."""


class UnreadableVideoWarning(RuntimeWarning):
    """Warned once per broken video that is skipped; a separate class so users can filter it."""


class _Unreadable(Exception):
    """Internal: a video file could not be turned into a clip."""


# ----------------------------------------------------------------------------- discovery


def discover_videos(source: str | Path) -> list[Path]:
    """List the videos of one source: a folder (recursive), a video file or an index file.

    Folders are searched for VIDEO_EXTENSIONS (any case) and sorted so that indices are the same
    on every machine. Index files (.txt/.csv, `path label` per line, label ignored) resolve
    relative paths against the index file's folder; the label is the last field, so a path may
    contain spaces when a label follows it. Entries are not checked here (broken or missing ones
    are skipped lazily by the dataset).
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise CorpusError(f"video source not found: {path}")
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()]
        return sorted(found)
    if path.suffix.lower() in INDEX_EXTENSIONS:
        return _read_index(path)
    # Any other file is taken as a video: decord reads more containers than the folder filter.
    return [path]


def parse_index(index: Path) -> Iterator[tuple[int, Path, str | None]]:
    """The entries of a V-JEPA index file: (line number, path, label or None) per line.

    One `path label` per line, space separated; blank and `#` lines are skipped. The label is
    the last field, so paths may contain spaces when a label follows; a line with a single
    field is a path without label. Relative paths resolve against the index file's folder. No
    per-line stat: index files can be huge.
    """
    base = index.parent
    with index.open(encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)
            path = Path(parts[0]).expanduser()
            label = parts[1] if len(parts) == 2 else None
            yield number, path if path.is_absolute() else base / path, label


def _read_index(index: Path) -> list[Path]:
    return [path for _, path, _ in parse_index(index)]


# ----------------------------------------------------------------------------- clip spec


@dataclass
class ClipSpec:
    """How clips are cut and augmented; defaults follow V-JEPA pretraining (16x4, 224 crop)."""

    frames_per_clip: int = 16
    frame_step: int = 4
    resolution: int = 224
    crop_scale: tuple[float, float] = (0.3, 1.0)  # random resized crop area scale
    crop_aspect: tuple[float, float] = (0.75, 1.35)
    hflip: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    train: bool = True  # False -> deterministic center clip, resize + center crop, no flip

    def __post_init__(self) -> None:
        # Configs arrive from YAML as lists; store tuples so specs compare and hash cleanly.
        self.crop_scale = tuple(float(v) for v in self.crop_scale)
        self.crop_aspect = tuple(float(v) for v in self.crop_aspect)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if self.frames_per_clip < 1 or self.frame_step < 1 or self.resolution < 1:
            raise ValueError(
                "frames_per_clip, frame_step and resolution must be >= 1, got "
                f"{self.frames_per_clip}, {self.frame_step}, {self.resolution}"
            )
        lo, hi = self.crop_scale
        if len(self.crop_scale) != 2 or not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {lo, hi}")
        lo, hi = self.crop_aspect
        if len(self.crop_aspect) != 2 or not 0 < lo <= hi:
            raise ValueError(f"crop_aspect must be (lo, hi) with 0 < lo <= hi, got {lo, hi}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values each, std > 0")

    @property
    def span(self) -> int:
        """Frames of source video covered by one full clip."""
        return (self.frames_per_clip - 1) * self.frame_step + 1


def _clip_indices(num_frames: int, spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """Frame indices of one clip; short videos repeat their last sampled frame."""
    if num_frames >= spec.span:
        room = num_frames - spec.span
        start = int(rng.integers(0, room + 1)) if spec.train else room // 2
        return start + spec.frame_step * np.arange(spec.frames_per_clip)
    idx = np.arange(0, num_frames, spec.frame_step)[: spec.frames_per_clip]
    pad = np.full(spec.frames_per_clip - len(idx), idx[-1])
    return np.concatenate([idx, pad])


def _random_resized_crop(
    rng: np.random.Generator, h: int, w: int, spec: ClipSpec
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a crop with random area scale and log-uniform aspect."""
    area = h * w
    log_lo, log_hi = math.log(spec.crop_aspect[0]), math.log(spec.crop_aspect[1])
    for _ in range(10):
        target = area * rng.uniform(*spec.crop_scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return top, left, ch, cw
    return _fallback_crop(h, w, spec)


def _fallback_crop(h: int, w: int, spec: ClipSpec) -> tuple[int, int, int, int]:
    """Center crop with the aspect clamped to the allowed range (used when sampling fails)."""
    ratio = w / h
    if ratio < spec.crop_aspect[0]:
        cw, ch = w, round(w / spec.crop_aspect[0])
    elif ratio > spec.crop_aspect[1]:
        ch, cw = h, round(h * spec.crop_aspect[1])
    else:
        ch, cw = h, w
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _center_square(h: int, w: int) -> tuple[int, int, int, int]:
    """Largest centered square: resizing it equals resize-short-side then center crop."""
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def _decode_size(h: int, w: int, spec: ClipSpec) -> tuple[int, int] | None:
    """Smaller (height, width) to decode at, or None to decode at the source size.

    Chosen so that the smallest crop the spec can produce still has >= resolution pixels per
    side, i.e. the final resize is never an upsampling that full-size decoding would avoid.
    """
    if spec.train:
        smallest = h * w * spec.crop_scale[0]
        min_w = min(w, math.sqrt(smallest * spec.crop_aspect[0]))
        min_h = min(h, math.sqrt(smallest / spec.crop_aspect[1]))
        _, _, fh, fw = _fallback_crop(h, w, spec)
        min_h, min_w = min(min_h, fh), min(min_w, fw)
    else:
        min_h = min_w = min(h, w)
    factor = max(spec.resolution / min_h, spec.resolution / min_w)
    if factor >= _DECODE_SMALL_BELOW:
        return None
    width = max(1, math.ceil(w * factor))
    while width in _DECORD_BAD_WIDTHS:
        width += 1
    return max(1, math.ceil(h * factor)), width


def _one_line(err: BaseException) -> str:
    """Short reason from a decoder error, without decord's '[time] file.cc:line:' prefix."""
    text = (str(err).strip().splitlines() or [""])[0]
    text = re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", text)
    return f"{type(err).__name__}: {text[:200]}"


def _as_numpy(batch: Any) -> np.ndarray:
    """decord returns its own NDArray under the native bridge; accept a torch bridge too."""
    if hasattr(batch, "asnumpy"):
        return batch.asnumpy()
    if isinstance(batch, torch.Tensor):
        return batch.numpy()
    return np.asarray(batch)


# ----------------------------------------------------------------------------- dataset


class VideoClipDataset(Dataset):
    """One clip per discovered video, sampled and augmented deterministically per (seed, epoch).

    `__getitem__(i)` returns dict(video=float [3, T, H, W] normalised, index=i, path=str) where
    path is the file actually read (another one if video i is broken).
    """

    def __init__(
        self,
        sources: Sequence[str | Path],
        spec: ClipSpec,
        weights: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(sources, (str, Path)):
            sources = [sources]
        sources = list(sources)
        if not sources:
            raise CorpusError("no video sources given")
        if weights is None:
            weights = [None] * len(sources)
        else:
            weights = [float(v) for v in weights]
            if len(weights) != len(sources):
                raise ValueError(f"got {len(weights)} weights for {len(sources)} sources")
            if any(not math.isfinite(v) or v < 0 for v in weights):
                raise ValueError(f"source weights must be finite and >= 0, got {weights}")

        self.spec = spec
        self.seed = int(seed)
        self.sources = [str(s) for s in sources]
        self.paths: list[Path] = []
        self.source_ranges: list[tuple[int, int]] = []
        source_weights = []
        for src, weight in zip(sources, weights, strict=True):
            found = discover_videos(src)
            start = len(self.paths)
            self.paths.extend(found)
            self.source_ranges.append((start, len(self.paths)))
            if not found:
                warnings.warn(f"no videos found in {src}", UnreadableVideoWarning, stacklevel=2)
            # Without explicit weights a source weighs as many videos as it has (uniform mixing).
            source_weights.append(float(len(found)) if weight is None else weight)
            if weight is not None and weight > 0 and not found:
                source_weights[-1] = 0.0
        if not self.paths:
            raise CorpusError(f"no videos found in {', '.join(self.sources)}")
        if sum(source_weights) <= 0:
            raise ValueError("every source with videos has weight 0")
        self.source_weights = source_weights
        self._source_of = np.repeat(
            np.arange(len(self.source_ranges)), [hi - lo for lo, hi in self.source_ranges]
        )

        # Shared across DataLoader workers (fork or spawn): file status, source frame size.
        n = len(self.paths)
        self._status = torch.zeros(n, dtype=torch.uint8).share_memory_()
        self._dims = torch.zeros(n, 2, dtype=torch.int32).share_memory_()
        self._reasons: dict[int, str] = {}  # this process only; for summary()
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = torch.tensor(spec.mean).view(1, 3, 1, 1) / std

    # -- bookkeeping -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def skipped(self) -> int:
        """Number of distinct files found unreadable so far (by any worker)."""
        return int((self._status == _BAD).sum())

    def summary(self) -> dict[str, Any]:
        """Counts for the end-of-run report: videos, readable, skipped, unchecked, bad paths."""
        status = self._status
        bad = torch.nonzero(status == _BAD).flatten().tolist()
        return {
            "sources": len(self.sources),
            "videos": len(self),
            "readable": int((status == _OK).sum()),
            "skipped": len(bad),
            "unchecked": int((status == _UNKNOWN).sum()),
            "skipped_paths": [str(self.paths[i]) for i in bad],
            "skipped_reasons": {str(self.paths[i]): r for i, r in self._reasons.items()},
        }

    def _rng(self, index: int, attempt: int, stream: int, epoch: int) -> np.random.Generator:
        seq = [self.seed & 0xFFFFFFFFFFFFFFFF, epoch & 0xFFFFFFFFFFFFFFFF, index, attempt]
        return np.random.default_rng(seq + [stream])

    def _mark_bad(self, idx: int, reason: str) -> None:
        self._status[idx] = _BAD
        self._reasons[idx] = reason
        warnings.warn(
            f"skipping unreadable video {self.paths[idx]}: {reason}",
            UnreadableVideoWarning,
            stacklevel=3,
        )

    # -- items -----------------------------------------------------------------------------

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get(index, epoch=0)

    def get(self, index: int, epoch: int) -> dict[str, Any]:
        """Item ``index`` as drawn in ``epoch`` (pretraining passes its step: see
        ``StepClips``)."""
        index = int(index)
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} videos")
        limit = min(n, MAX_DISTINCT_TRIES)
        tried: list[int] = []
        candidate = index
        for attempt in range(limit):
            tried.append(candidate)
            if int(self._status[candidate]) != _BAD:
                try:
                    video = self._load(candidate, self._rng(index, attempt, 0, epoch))
                except _Unreadable as err:
                    self._mark_bad(candidate, str(err))
                else:
                    self._status[candidate] = _OK
                    return {"video": video, "index": index, "path": str(self.paths[candidate])}
            if attempt + 1 == limit or self.skipped >= n:
                break
            candidate = self._replacement(index, attempt + 1, tried, epoch)
        raise CorpusError(
            f"no readable videos in {', '.join(self.sources)} "
            f"({len(tried)} files tried, {self.skipped} of {n} known unreadable)"
        )

    def _replacement(self, index: int, attempt: int, tried: list[int], epoch: int) -> int:
        """Next file to try for item `index`: untried, same source while it has any left.

        Depends only on (seed, epoch, index, attempt), never on which files other items found
        broken, so the final clip is the same whatever the worker layout.
        """
        lo, hi = self.source_ranges[self._source_of[index]]
        if sum(lo <= t < hi for t in tried) >= hi - lo:
            lo, hi = 0, len(self)
        rng = self._rng(index, attempt, 1, epoch)
        candidate = int(rng.integers(lo, hi))
        taken = set(tried)
        while candidate in taken:  # linear probe: at most len(tried) steps
            candidate = lo + (candidate + 1 - lo) % (hi - lo)
        return candidate

    def _load(self, idx: int, rng: np.random.Generator) -> torch.Tensor:
        """Decode one clip of video `idx` and augment it; raises _Unreadable on any failure."""
        path = self.paths[idx]
        try:
            size = os.stat(path).st_size
        except OSError:
            raise _Unreadable("file not found") from None
        if size < MIN_VIDEO_BYTES:
            raise _Unreadable(f"file too small ({size} bytes)")
        h, w = (int(v) for v in self._dims[idx])
        small = _decode_size(h, w, self.spec) if h > 0 else None
        try:
            try:
                reader = self._reader(path, small)
            except Exception:
                if small is None:
                    raise
                small = None  # same fallback as in _fetch: a reduced size may be what failed
                reader = self._reader(path, None)
            num_frames = len(reader)
            if num_frames < 1:
                raise _Unreadable("no frames")
            clip = _clip_indices(num_frames, self.spec, rng)
            indices, inverse = np.unique(clip, return_inverse=True)
            frames = self._fetch(path, reader, indices, small)
            if h == 0:
                # First sight of this file: learn its size, then decode small if it pays off,
                # so the clip is the same as on every later (size known) read.
                h, w = frames.shape[1:3]
                self._dims[idx, 0], self._dims[idx, 1] = h, w
                small = _decode_size(h, w, self.spec)
                if small is not None:
                    frames = self._fetch(path, None, indices, small)
        except _Unreadable:
            raise
        except Exception as err:  # decord raises RuntimeError / DECORDError / others
            raise _Unreadable(_one_line(err)) from None
        return self._transform(frames, inverse, h, w, rng)

    def _fetch(
        self,
        path: Path,
        reader: decord.VideoReader | None,
        indices: np.ndarray,
        size: tuple[int, int] | None,
    ) -> np.ndarray:
        """All distinct frames of a clip in one get_batch call, [U, H, W, 3] uint8.

        A failed reduced-size decode falls back to the source size: the file may still be fine
        (decord mishandles some output sizes), and the fallback is the same on every read.
        """
        try:
            if reader is None:
                reader = self._reader(path, size)
            frames = _as_numpy(reader.get_batch(indices.tolist()))
            self._check(frames, len(indices), size)
            return frames
        except Exception:
            if size is None:
                raise
            return self._fetch(path, None, indices, None)

    @staticmethod
    def _reader(path: Path, size: tuple[int, int] | None) -> decord.VideoReader:
        kwargs = {} if size is None else {"height": size[0], "width": size[1]}
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **kwargs)

    @staticmethod
    def _check(frames: np.ndarray, count: int, size: tuple[int, int] | None) -> None:
        if frames.ndim != 4 or frames.shape[0] != count or frames.shape[3] != 3:
            raise _Unreadable(f"decoder returned frames of shape {tuple(frames.shape)}")
        if frames.shape[1] < 1 or frames.shape[2] < 1:
            raise _Unreadable("decoder returned empty frames")
        if size is not None and tuple(frames.shape[1:3]) != size:
            raise _Unreadable(f"decoder returned {frames.shape[1:3]} instead of {size}")

    def _transform(
        self,
        frames: np.ndarray,
        inverse: np.ndarray,
        h: int,
        w: int,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        """One crop + flip for the whole clip, resize, normalise; [U,h',w',3] -> [3,T,R,R]."""
        spec = self.spec
        if spec.train:
            top, left, ch, cw = _random_resized_crop(rng, h, w, spec)
            flip = spec.hflip and rng.random() < 0.5
        else:
            top, left, ch, cw = _center_square(h, w)
            flip = False
        dh, dw = frames.shape[1:3]
        if (dh, dw) != (h, w):  # decoded small: map the source-pixel box onto decoded pixels
            sy, sx = dh / h, dw / w
            bottom, right = min(dh, round((top + ch) * sy)), min(dw, round((left + cw) * sx))
            top, left = min(dh - 1, round(top * sy)), min(dw - 1, round(left * sx))
            ch, cw = max(1, bottom - top), max(1, right - left)
        crop = torch.from_numpy(frames[:, top : top + ch, left : left + cw])
        x = crop.permute(0, 3, 1, 2).float()  # [U, 3, ch, cw]
        res = spec.resolution
        if (ch, cw) != (res, res):
            x = F.interpolate(
                x,
                size=(res, res),
                mode="bilinear",
                align_corners=False,
                antialias=ch > res or cw > res,
            )
        if flip:
            x = x.flip(-1)
        x = x * self._scale - self._shift
        if len(inverse) != x.shape[0] or not np.array_equal(inverse, np.arange(len(inverse))):
            x = x[torch.from_numpy(inverse)]
        return x.permute(1, 0, 2, 3).contiguous()


# ----------------------------------------------------------------------------- sampler


class StepBatchSampler(Sampler[list[int]]):
    """The batch of step ``s`` depends only on (seed, s, rank).

    Videos are drawn with replacement, sources mixed by their weights. Each index is tagged with
    its step (``step * N + video``) so the clip's random crop is also a function of the step:
    resuming at any step reproduces exactly the batches an uninterrupted run would have seen,
    whatever the number of DataLoader workers.
    """

    def __init__(
        self,
        probs: np.ndarray,
        batch_size: int,
        start: int,
        stop: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.probs, self.batch_size = probs, batch_size
        self.start, self.stop, self.seed = start, stop, seed
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        n = len(self.probs)
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step])
            chosen = rng.choice(n, size=self.batch_size * self.world_size, p=self.probs)
            mine = chosen[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            yield [step * n + int(i) for i in mine]


class StepClips(Dataset):
    """Decodes the step-tagged indices of ``StepBatchSampler``."""

    def __init__(self, clips: VideoClipDataset) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, tagged: int) -> torch.Tensor:
        step, index = divmod(int(tagged), len(self.clips))
        return self.clips.get(index, epoch=step)["video"]


def video_probabilities(clips: VideoClipDataset) -> np.ndarray:
    """Per-video sampling probability: each source's weight spread evenly over its videos."""
    probs = np.zeros(len(clips))
    for (lo, hi), weight in zip(clips.source_ranges, clips.source_weights, strict=True):
        if hi > lo:
            probs[lo:hi] = weight / (hi - lo)
    return probs / probs.sum()


# ----------------------------------------------------------------------------- loader


def make_step_loader(
    clips: VideoClipDataset,
    batch_size: int,
    start: int,
    stop: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """The pretraining loader: batches of steps ``start .. stop - 1`` of one ``StepBatchSampler``
    (each a [B, 3, T, H, W] tensor), decoded by ``num_workers`` processes."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
    sampler = StepBatchSampler(
        video_probabilities(clips), batch_size, start, stop, seed, rank, world_size
    )
    return DataLoader(
        StepClips(clips),
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers else None,
    )
