"""Files that users keep, written so that nothing already written is lost.

Every metrics file, model, manifest, checkpoint and label set goes through ``atomic_path``:
the new content is written to a temporary file in the same folder, flushed to disk and renamed
over the old file, so a crash, a kill or a full disk leaves either the old file or the new one,
never a truncated mix. ``exclusive`` gives one writer per output folder (an advisory lock that
the kernel drops when the process dies, so a killed run never leaves a stale lock behind).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's files are private (0600)
TMP_PREFIX = ".tmp-"  # half-written files: never read, removed by the next writer
LOCK_FILE = ".lock"


class FolderInUseError(RuntimeError):
    """Another process holds the folder's lock; the message is one line."""


def describe_os_error(exc: OSError) -> str:
    """The kernel's reason and the file, on one line ("No space left on device: /runs/x")."""
    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` for writers that take a file name (safetensors, numpy,
    torch, ffmpeg). When the block ends without an error the file is flushed to disk and
    renamed over ``path``; on any error (a full disk included) it is removed and ``path`` keeps
    its old content."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)  # a writer may have made the file anew, private
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", newline: str | None = None) -> Iterator[IO[Any]]:
    """``open(path, mode)`` whose content replaces ``path`` only once it is complete."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, newline=newline) as handle:
        yield handle


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json_atomic(path: str | Path, payload: Any, *, sort_keys: bool = True) -> None:
    """JSON (indented, one trailing newline) that readers see whole or not at all; values JSON
    has no type for (paths, dates) are written as strings."""
    text = json.dumps(payload, indent=2, sort_keys=sort_keys, default=str)
    write_text_atomic(path, text + "\n")


def save_safetensors_atomic(tensors: dict[str, Any], path: str | Path,
                            metadata: dict[str, str] | None = None) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(contiguous, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # an I/O failure, e.g. a full disk, as an OSError
            found = re.search(r"(?:os error|code:) (\d+)", str(exc))
            code = int(found.group(1)) if found else errno.EIO
            raise OSError(code, os.strerror(code), str(path)) from None


class _WriteErrors:
    """A binary handle that keeps the OSError of a failed write: torch's zip writer reports a
    full disk as a RuntimeError about stream positions, which would hide the reason."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.error = handle, None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_torch_atomic(state: Any, path: str | Path) -> None:
    import torch

    with atomic_open(path, "wb") as handle:
        writer = _WriteErrors(handle)
        try:
            torch.save(state, writer)
        except RuntimeError:
            if writer.error is not None:  # named by the file the user asked for
                error = writer.error
                raise OSError(error.errno, error.strerror, str(path)) from None
            raise


def remove_stale_tmp(folder: str | Path) -> None:
    """Temporary files that a killed writer left in ``folder``; call it holding the lock."""
    for path in Path(folder).glob(f"{TMP_PREFIX}*"):
        if path.is_file():
            path.unlink(missing_ok=True)


_HELD: set[Path] = set()  # folders this process holds: POSIX locks never conflict within one


@contextlib.contextmanager
def exclusive(folder: str | Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock for the block; ``what`` names the writer in the error (e.g.
    "a jepa_world.pretrain run"). A POSIX record lock: it belongs to this process alone, so
    forked children (DataLoader workers) that outlive a killed run do not keep it."""
    folder = Path(folder)
    key = folder.resolve()
    if key in _HELD:
        raise FolderInUseError(f"{what} is already writing to {folder}")
    handle = open(folder / LOCK_FILE, "a")
    try:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise FolderInUseError(f"{what} is already writing to {folder}") from None
            raise
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        handle.close()


def replace_folder(target: str | Path, fill: Callable[[Path], Any]) -> Path:
    """Replace the folder ``target`` by what ``fill(staging)`` writes into a fresh staging
    folder beside it: the old folder is moved aside only once the new one is complete and is
    deleted after the swap, so a crash leaves the old folder, the new one, or both on disk."""
    target = Path(target)
    staging = target.with_name(f"{TMP_PREFIX}new-{target.name}")
    aside = target.with_name(f"{TMP_PREFIX}old-{target.name}")
    for leftover in (staging, aside):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        fill(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return swap_folder(staging, target)


def swap_folder(staging: str | Path, target: str | Path) -> Path:
    """Put the complete folder ``staging`` in place of ``target``: the old folder is moved
    aside first and deleted after the swap, so a crash leaves the old folder, the new one, or
    both on disk, never a half-written one."""
    staging, target = Path(staging), Path(target)
    aside = target.with_name(f"{TMP_PREFIX}old-{target.name}")
    shutil.rmtree(aside, ignore_errors=True)
    if target.exists():
        target.rename(aside)
    staging.rename(target)
    _fsync_folder(target.parent)
    shutil.rmtree(aside, ignore_errors=True)
    return target


def load_safetensors_into(module: Any, path: str | Path, what: str) -> None:
    """Load a safetensors file into ``module``, every failure (missing, corrupt, wrong shapes)
    one ValueError naming ``what``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        module.load_state_dict(load_file(str(path)))
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        message = " ".join(str(exc).split())[:200]
        raise ValueError(f"{what} weights {path} are unusable: {message}") from None
