"""Classification data: labelled clips of the videos of V-JEPA index files."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jepa_world.data.video import (
    ClipSpec,
    CorpusError,
    UnreadableVideoWarning,
    VideoClipDataset,
    parse_index,
)
from jepa_world.models import VisionTransformer
from jepa_world.probe.features import ClipShape, extract_features
from jepa_world.probe.fitting import ProbeData
from jepa_world.schemas.probe import ProbeConfig
from jepa_world.training.cli import UserError


@dataclass
class LabelledVideos:
    """The videos of an index file and their labels, in file order."""

    index: Path
    paths: list[Path]
    labels: list[str]


def read_labelled_index(index: str | Path) -> LabelledVideos:
    """Parse a V-JEPA index file with the pretraining loader's parser, then require a label on
    every line and every video to exist (a probe cannot skip a labelled sample silently)."""
    index = Path(index).expanduser()
    if not index.is_file():
        raise UserError(f"index file not found: {index}")
    paths, labels = [], []
    try:
        entries = list(parse_index(index))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read index file {index}: {type(exc).__name__}") from None
    for number, path, label in entries:
        if label is None:
            raise UserError(f"{index}:{number}: expected 'path label', got '{str(path)[:80]}'")
        if not path.is_file():
            raise UserError(f"{index}:{number}: video not found: {path}")
        paths.append(path)
        labels.append(label)
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


def open_classification(cfg: ProbeConfig) -> tuple[LabelledVideos, LabelledVideos]:
    train = read_labelled_index(cfg.data.index_train)
    if cfg.data.index_val:
        return train, read_labelled_index(cfg.data.index_val)
    return split_index(train, cfg.data.val_fraction, cfg.data.split_seed)


def classification_data(
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
    groups = np.arange(len(train.paths))  # every video is its own unit of labelling
    return ProbeData(*features, y_train, y_val, info, classes, groups)


def split_index(
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
