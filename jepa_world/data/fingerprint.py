"""What a training run trained on, as a short digest: a run resumed or rerun on other contents
under the same paths (episodes appended, a corpus re-recorded) is refused instead of being
silently continued or called finished."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def _digest(lines: Iterable[str]) -> str:
    sha = hashlib.sha256()
    for line in lines:
        sha.update(line.encode())
        sha.update(b"\n")
    return sha.hexdigest()[:16]


def video_fingerprint(paths: Sequence[Path]) -> dict[str, Any]:
    """The video files in order with their sizes (listing and ``stat`` only: no decoding)."""
    sizes = [_size(p) for p in paths]
    return {"unit": "videos", "count": len(paths), "bytes": sum(max(s, 0) for s in sizes),
            "digest": _digest(f"{p}\t{s}" for p, s in zip(paths, sizes, strict=True))}


def episode_fingerprint(datasets: Sequence[Any]) -> dict[str, Any]:
    """Every episode of every recorded dataset (``EpisodeDataset``) in order: its name, seed,
    length and file sizes, as the dataset's manifest lists them."""
    lines, count = [], 0
    for index, data in enumerate(datasets):
        lines.append(f"dataset {index}\t{data.env_id}\t{data.image_size}")
        for entry in data.entries:
            files = sorted((entry.get("files") or {}).items())
            lines.append(f"{entry['name']}\t{entry.get('seed')}\t{entry.get('length')}\t{files}")
            count += 1
    return {"unit": "episodes", "count": count, "digest": _digest(lines)}


def refuse_repeated_paths(paths: Sequence[str | Path], flag: str) -> None:
    """The same dataset twice would train (or validate) on copies of its own episodes."""
    from jepa_world.training.cli import UserError

    seen: dict[Path, str] = {}
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        if resolved in seen:
            raise UserError(f"{flag} names the same dataset twice ({seen[resolved]} and {path})")
        seen[resolved] = str(path)


def describe(fingerprint: dict[str, Any]) -> str:
    return f"{fingerprint.get('count')} {fingerprint.get('unit', 'items')}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1  # missing now: the dataset skips it, and the digest says so
