"""The on-disk episode format shared by the recorder (``envs.collect``) and the reader
(``jepa_world.data.episodes``).

::

    DIR/
      manifest.json            format, env id and settings, software versions, one entry per episode
      episodes/
        000000/
          frames.mp4           T+1 RGB frames (obs_0 .. obs_T), lossless H.264 (libx264rgb), decord reads it
          arrays.npz           actions [T,A] f32, proprio [T+1,P] f32, rewards [T] f32, and
                               the task's state arrays [T+1,...] named in the manifest's
                               state_keys (always qpos and qvel, the simulator state; reach
                               adds joint_sincos and fingertip)
          meta.json            index, seed, length, policy, byte size of each file

An episode directory appears only complete: it is written under ``episodes/.tmp-*`` and renamed
into place after ``meta.json``. The manifest is rewritten atomically after every episode, and an
episode directory that a crash left out of the manifest is adopted back on the next open.
The ``episodes/`` folder is also a plain video corpus for pretraining.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jepa_world.files import TMP_PREFIX, write_json_atomic

FORMAT_NAME = "jepa-world-episodes"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EPISODES_DIR = "episodes"
FRAMES_FILE = "frames.mp4"
ARRAYS_FILE = "arrays.npz"
META_FILE = "meta.json"
ARRAY_KEYS = ("actions", "proprio", "qpos", "qvel", "rewards")  # every dataset has these
DEFAULT_STATE_KEYS = ("qpos", "qvel")  # manifests written before tasks listed their own
__all__ = ["TMP_PREFIX", "write_json_atomic"]  # re-exported: the recorder imports them here


class DatasetError(ValueError):
    """A dataset folder that is missing, corrupt or inconsistent; the message is one line."""


def episode_name(index: int) -> str:
    return f"{index:06d}"


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path) as handle:
            payload = json.load(handle)
    except FileNotFoundError:
        raise DatasetError(f"{what} not found: {path}") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{what} is unreadable ({exc.__class__.__name__}): {path}") from None
    if not isinstance(payload, dict):
        raise DatasetError(f"{what} is not a JSON object: {path}")
    return payload


def load_manifest(root: Path) -> dict[str, Any]:
    """Read and sanity-check ``manifest.json`` of a dataset folder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    manifest = read_json(root / MANIFEST, "dataset manifest")
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{root / MANIFEST} is not a {FORMAT_NAME} manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise DatasetError(
            f"{root} uses format version {manifest['format_version']}; "
            f"this jepa-world reads up to {FORMAT_VERSION}"
        )
    if not isinstance(manifest.get("episodes"), list):
        raise DatasetError(f"{root / MANIFEST} has no episode list")
    _check_fields(manifest, MANIFEST_FIELDS, f"{root / MANIFEST}")
    for entry in manifest["episodes"]:
        check_episode_entry(entry, root / MANIFEST)
    return manifest


# (key, type, minimum) of the manifest and of each episode entry / meta.json
MANIFEST_FIELDS = (("env_id", str, None), ("image_size", int, 1), ("action_dim", int, 1),
                   ("proprio_dim", int, 0))
EPISODE_FIELDS = (("name", str, None), ("index", int, 0), ("seed", int, 0), ("length", int, 1),
                  ("files", dict, None))


def check_episode_entry(entry: Any, where: Path) -> None:
    """An episode's record (manifest entry or meta.json) with the fields readers rely on."""
    if not isinstance(entry, dict):
        raise DatasetError(f"{where}: an episode entry is not a JSON object: {entry!r:.60}")
    _check_fields(entry, EPISODE_FIELDS, f"{where}: episode {entry.get('name', '?')!r}")
    name = entry["name"]
    if name != Path(name).name or name.startswith("."):
        raise DatasetError(f"{where}: episode name {name!r} is not a folder name")
    for filename, size in entry["files"].items():
        if filename != Path(filename).name or not _is(size, int) or size < 0:
            raise DatasetError(f"{where}: episode {name!r}: bad file record {filename!r}: {size!r}")


def _check_fields(record: dict[str, Any], fields: tuple, where: str) -> None:
    for key, kind, minimum in fields:
        value = record.get(key)
        if not _is(value, kind) or (minimum is not None and value < minimum):
            raise DatasetError(f"{where}: {key} must be {_describe(kind, minimum)}, "
                               f"got {value!r:.60}")


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _describe(kind: type, minimum: int | None) -> str:
    names = {str: "a string", int: "an integer", dict: "an object"}
    return names[kind] + (f" >= {minimum}" if minimum is not None else "")


def check_episode_files(root: Path, entry: dict[str, Any]) -> None:
    """Cheap integrity check: every file present with the byte size recorded when written."""
    folder = Path(root) / EPISODES_DIR / entry["name"]
    for filename, size in entry["files"].items():
        path = folder / filename
        if not path.is_file():
            raise DatasetError(f"episode {entry['name']}: missing file {path}")
        found = path.stat().st_size
        if found != size:
            raise DatasetError(
                f"episode {entry['name']}: {path} is truncated or altered "
                f"(expected {size} bytes, found {found})"
            )


def scan_orphan_episodes(root: Path, known: set[str]) -> list[dict[str, Any]]:
    """Complete episode folders that are not listed in the manifest (a crash after rename)."""
    folder = Path(root) / EPISODES_DIR
    found = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.name.startswith(TMP_PREFIX) or path.name in known or not path.is_dir():
            continue
        if (path / META_FILE).is_file():
            meta = read_json(path / META_FILE, "episode metadata")
            check_episode_entry(meta, path / META_FILE)
            found.append(meta)
    return found
