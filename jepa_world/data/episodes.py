"""Random access to trajectory datasets written by ``python -m envs.collect``.

Only the manifest is read up front; frames are decoded from an episode's mp4 on demand (decord
seeks to the requested frames) and the small per-episode arrays are kept in a bounded cache, so a
dataset far larger than RAM can feed training.
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from envs.dataset_format import (
    ARRAY_KEYS,
    ARRAYS_FILE,
    DEFAULT_STATE_KEYS,
    EPISODES_DIR,
    FRAMES_FILE,
    DatasetError,
    check_episode_files,
    load_manifest,
    scan_orphan_episodes,
)

__all__ = ["DatasetError", "EpisodeDataset", "WindowDataset"]


class _LRU(OrderedDict):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def fetch(self, key, build):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = build()
        self[key] = value
        if len(self) > self.capacity:
            self.popitem(last=False)
        return value


_OPEN_DATASETS: weakref.WeakSet = weakref.WeakSet()


def _close_video_readers() -> None:
    # A decord reader's decoder threads do not survive fork(): a DataLoader worker forked while
    # one is open hangs on its first decode. Readers are closed before every fork (and reopened
    # on demand), so user code may read windows and then start workers in the same process.
    for dataset in list(_OPEN_DATASETS):
        dataset._readers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_video_readers)


class EpisodeDataset:
    """A recorded dataset folder: ``len()`` episodes, each with T actions and T+1 frames.

    ``validate`` checks that every listed file exists with its recorded byte size (cheap: no
    decoding), so a missing or truncated file is reported when the dataset is opened rather
    than in the middle of training.
    """

    def __init__(self, root: str | Path, validate: bool = True, cache_size: int = 16) -> None:
        self.root = Path(root).expanduser()
        self.manifest = load_manifest(self.root)
        entries = list(self.manifest["episodes"])
        entries += scan_orphan_episodes(self.root, {e["name"] for e in entries})
        self.entries = sorted(entries, key=lambda e: e["index"])
        if not self.entries:
            raise DatasetError(f"dataset {self.root} holds no episodes")
        if validate:
            for entry in self.entries:
                check_episode_files(self.root, entry)
        self.lengths = np.array([e["length"] for e in self.entries], dtype=np.int64)
        self._arrays = _LRU(cache_size)
        self._readers = _LRU(min(cache_size, 8))
        _OPEN_DATASETS.add(self)

    # ------------------------------------------------------------------ metadata
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def env_id(self) -> str:
        return self.manifest["env_id"]

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    @property
    def seeds(self) -> list[int]:
        return [int(e["seed"]) for e in self.entries]

    def _folder(self, episode: int) -> Path:
        return self.root / EPISODES_DIR / self.entries[episode]["name"]

    # ------------------------------------------------------------------ access
    @property
    def state_keys(self) -> list[str]:
        """The task's state arrays in every episode (qpos and qvel at least)."""
        return list(self.manifest.get("state_keys", DEFAULT_STATE_KEYS))

    @property
    def probe_targets(self) -> list[str]:
        """The task's default frozen-probe targets (state arrays), as recorded."""
        return list(self.manifest.get("probe_targets", ["qpos"]))

    def arrays(self, episode: int) -> dict[str, np.ndarray]:
        """actions [T,A], proprio [T+1,P], rewards [T] and the state arrays [T+1,...]."""
        return self._arrays.fetch(episode, lambda: self._load_arrays(episode))

    def _load_arrays(self, episode: int) -> dict[str, np.ndarray]:
        path = self._folder(episode) / ARRAYS_FILE
        try:
            with np.load(path, allow_pickle=False) as npz:
                keys = dict.fromkeys([*ARRAY_KEYS, *self.state_keys])
                arrays = {key: npz[key] for key in keys}
        except Exception as exc:
            raise DatasetError(f"cannot read {path}: {exc.__class__.__name__}: {exc}") from None
        length = self.entries[episode]["length"]
        if len(arrays["actions"]) != length or len(arrays["proprio"]) != length + 1:
            raise DatasetError(f"{path} does not match the recorded length {length}")
        return arrays

    def frames(self, episode: int, indices: np.ndarray | list[int] | None = None) -> np.ndarray:
        """uint8 frames [len(indices),H,W,3] of one episode (all T+1 frames by default)."""
        length = int(self.lengths[episode]) + 1
        idx = np.arange(length) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= length):
            raise IndexError(f"frame index out of range [0, {length}) in episode {episode}")
        reader = self._readers.fetch(episode, lambda: self._open_video(episode))
        try:
            frames = reader.get_batch(idx.tolist()).asnumpy()
        except Exception as exc:
            path = self._folder(episode) / FRAMES_FILE
            raise DatasetError(f"cannot decode {path}: {exc.__class__.__name__}") from None
        return frames

    def _open_video(self, episode: int):
        import decord

        path = self._folder(episode) / FRAMES_FILE
        try:
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        except Exception as exc:
            raise DatasetError(f"cannot decode {path}: {exc.__class__.__name__}") from None
        expected = int(self.lengths[episode]) + 1
        if len(reader) != expected:
            raise DatasetError(f"{path} has {len(reader)} frames, expected {expected}")
        return reader

    def window(
        self, episode: int, start: int, num_frames: int, frame_step: int = 1
    ) -> dict[str, np.ndarray]:
        """A sub-trajectory of ``num_frames`` frames taken every ``frame_step`` env steps.

        Returns frames [n,H,W,3] uint8, proprio [n,P], qpos [n,nq], and the actions between
        consecutive frames grouped in blocks: actions [n-1, frame_step, A].
        """
        span = (num_frames - 1) * frame_step
        if num_frames < 1 or frame_step < 1:
            raise ValueError("num_frames and frame_step must be positive")
        if start < 0 or start + span > self.lengths[episode]:
            raise IndexError(
                f"window [{start}, {start + span}] exceeds episode {episode} "
                f"of {self.lengths[episode]} steps"
            )
        idx = start + frame_step * np.arange(num_frames)
        arrays = self.arrays(episode)
        actions = arrays["actions"][start : start + span].reshape(num_frames - 1, frame_step, -1)
        return {
            "frames": self.frames(episode, idx),
            "proprio": arrays["proprio"][idx],
            "qpos": arrays["qpos"][idx],
            "actions": actions,
        }

    def __getstate__(self) -> dict[str, Any]:
        # decord readers cannot be pickled into DataLoader workers; each worker reopens its own.
        state = self.__dict__.copy()
        state["_readers"] = _LRU(self._readers.capacity)
        state["_arrays"] = _LRU(self._arrays.capacity)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _OPEN_DATASETS.add(self)


class WindowDataset:
    """Every window of ``num_frames`` frames (stride ``stride`` env steps) across a dataset.

    A map-style dataset for ``torch.utils.data.DataLoader``: items are dicts of numpy arrays,
    which the default collate turns into tensors.
    """

    def __init__(
        self,
        episodes: EpisodeDataset,
        num_frames: int,
        frame_step: int = 1,
        stride: int = 1,
        episode_ids: list[int] | None = None,
    ) -> None:
        self.episodes, self.num_frames, self.frame_step = episodes, num_frames, frame_step
        span = (num_frames - 1) * frame_step
        ids = range(len(episodes)) if episode_ids is None else episode_ids
        self.index = [
            (ep, start)
            for ep in ids
            for start in range(0, int(episodes.lengths[ep]) - span + 1, stride)
        ]
        if not self.index:
            raise DatasetError(
                f"no episode in {episodes.root} is long enough for {num_frames} frames "
                f"at frame_step {frame_step}"
            )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, np.ndarray]:
        episode, start = self.index[item]
        window = self.episodes.window(episode, start, self.num_frames, self.frame_step)
        window["episode"] = np.int64(episode)
        window["start"] = np.int64(start)
        return window
