"""Episode videos a person can read at a glance: what the agent sees beside the goal image, with
the step, the planner's energy and success written under them; the first episode also as a GIF
(for a README or a docs page)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CAPTION_ROWS = 2


@dataclass
class StepCaption:
    """What is written under one frame."""

    step: int
    budget: int
    energy: float | None  # the plan's energy at the last replanning (None before the first)
    success: bool


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def captioned_frame(frame: np.ndarray, goal: np.ndarray, caption: StepCaption,
                    scale: int) -> np.ndarray:
    """[H, 2W + gap, 3] -> the two images upscaled side by side, labelled, with the caption."""
    from PIL import Image, ImageDraw

    size = frame.shape[0] * scale
    gap, label_h = max(2, scale), max(12, size // 10)
    font_px = max(10, size // 12)
    panel = np.concatenate([frame, np.full((frame.shape[0], 1, 3), 255, np.uint8), goal], axis=1)
    panel = panel.repeat(scale, axis=0).repeat(scale, axis=1)
    width = panel.shape[1]
    band = CAPTION_ROWS * (font_px + 4) + 6
    canvas = Image.new("RGB", (width, label_h + size + band), (255, 255, 255))
    canvas.paste(Image.fromarray(panel), (0, label_h))
    draw = ImageDraw.Draw(canvas)
    font = _font(font_px)
    draw.text((4, 1), "current frame", fill=(0, 0, 0), font=font)
    draw.text((size + gap + 4, 1), "goal image", fill=(0, 0, 0), font=font)
    energy = "-" if caption.energy is None else f"{caption.energy:.4g}"
    lines = [f"step {caption.step}/{caption.budget}   energy {energy}",
             "success" if caption.success else "not at the goal"]
    colours = [(0, 0, 0), (0, 130, 0) if caption.success else (170, 0, 0)]
    for row, (line, colour) in enumerate(zip(lines, colours, strict=True)):
        draw.text((4, label_h + size + 4 + row * (font_px + 4)), line, fill=colour, font=font)
    image = np.asarray(canvas)
    return image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]  # even sizes for H.264


def write_gif(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """An endlessly looping GIF, written whole or not at all."""
    from PIL import Image

    from jepa_world.files import atomic_path

    images = [Image.fromarray(frame) for frame in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(round(1000 / fps)), loop=0)


def episode_video_writer(folder: Path, fps: float, scale: int, gif_episode: int = 0
                         ) -> Callable[[int, list[np.ndarray], np.ndarray, list[StepCaption]],
                                       None]:
    """The callback of ``EpisodeRunner``: one mp4 per episode (``episode_NNNN.mp4``), and
    ``episode_NNNN.gif`` for episode ``gif_episode``."""
    from envs.video_io import write_mp4

    def write(index: int, frames: list[np.ndarray], goal: np.ndarray,
              captions: list[StepCaption]) -> None:
        shown = [captioned_frame(frame, goal, caption, scale)
                 for frame, caption in zip(frames, captions, strict=True)]
        write_mp4(folder / f"episode_{index:04d}.mp4", np.stack(shown), fps=fps, lossless=False)
        if index == gif_episode:
            write_gif(folder / f"episode_{index:04d}.gif", shown, fps)

    return write
