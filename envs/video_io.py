"""Writing frames to mp4 with imageio-ffmpeg (its bundled ffmpeg, nothing to install)."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, lossless: bool = True) -> None:
    """Write uint8 frames [T,H,W,3] to ``path``.

    ``lossless`` uses RGB H.264 (libx264rgb, qp 0): decord decodes it back bit-exactly, so a
    dataset's pixels are the pixels the agent saw. Otherwise yuv420p H.264, which every video
    player shows (for videos meant for people).
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
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec=codec,
        pix_fmt_in="rgb24",
        pix_fmt_out=pix_fmt,
        macro_block_size=1,
        output_params=params,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
