"""Writing frames to mp4 with imageio-ffmpeg (its bundled ffmpeg, nothing to install)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from jepa_world.files import atomic_path


class VideoWriteError(OSError):
    """ffmpeg failed (a full disk, a bad path): the file at the target path is left as it was."""


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, lossless: bool = True) -> None:
    """Write uint8 frames [T,H,W,3] to ``path``.

    ``lossless`` uses RGB H.264 (libx264rgb, qp 0): decord decodes it back bit-exactly, so a
    dataset's pixels are the pixels the agent saw. Otherwise yuv420p H.264, which every video
    player shows (for videos meant for people). ffmpeg's exit status is checked and the file
    appears only complete (``jepa_world.files.atomic_path``).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if lossless:
        codec, pix_fmt, params = "libx264rgb", "rgb24", ["-qp", "0", "-preset", "fast"]
    else:
        if height % 2 or width % 2:
            raise ValueError(f"yuv420p video needs even sizes, got {width}x{height}")
        codec, pix_fmt, params = "libx264", "yuv420p", ["-crf", "18", "-preset", "fast"]
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:.6g}",
        "-i", "-", "-an", "-vcodec", codec, "-pix_fmt", pix_fmt, *params,
    ]
    with atomic_path(path) as tmp:
        result = subprocess.run([*command, str(tmp)], input=np.ascontiguousarray(frames).tobytes(),
                                capture_output=True)
        if result.returncode != 0 or tmp.stat().st_size == 0:
            lines = result.stderr.decode(errors="replace").strip().splitlines()
            reason = lines[-1] if lines else f"exit status {result.returncode}"
            raise VideoWriteError(f"could not write {path}: ffmpeg: {reason}")
