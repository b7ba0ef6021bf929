"""Episode videos a person can read at a glance: what the agent sees beside the goal image (and,
for world models with a state readout, the state the current plan is predicted to end in), with
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


PREVIEW_TITLE = "plan's predicted end"


def captioned_frame(frame: np.ndarray, goal: np.ndarray, caption: StepCaption, scale: int,
                    preview: np.ndarray | None = None, with_preview: bool = False) -> np.ndarray:
    """The current frame, the goal image and (``with_preview``) the state the plan is predicted
    to end in, upscaled side by side and labelled, with the caption under them."""
    from PIL import Image, ImageDraw

    size = frame.shape[0] * scale
    gap, label_h = max(2, scale), max(12, size // 10)
    font_px = max(10, size // 12)
    separator = np.full((frame.shape[0], 1, 3), 255, np.uint8)
    images = [frame, separator, goal]
    if with_preview:  # grey until the first plan
        images += [separator, preview if preview is not None else np.full_like(frame, 128)]
    panel = np.concatenate(images, axis=1)
    panel = panel.repeat(scale, axis=0).repeat(scale, axis=1)
    width = panel.shape[1]
    band = CAPTION_ROWS * (font_px + 4) + 6
    canvas = Image.new("RGB", (width, label_h + size + band), (255, 255, 255))
    canvas.paste(Image.fromarray(panel), (0, label_h))
    draw = ImageDraw.Draw(canvas)
    font = _font(font_px)
    draw.text((4, 1), "current frame", fill=(0, 0, 0), font=font)
    draw.text((size + gap + 4, 1), "goal image", fill=(0, 0, 0), font=font)
    if with_preview:
        draw.text((2 * (size + gap) + 4, 1), PREVIEW_TITLE, fill=(0, 0, 0), font=font)
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
                         ) -> Callable[..., None]:
    """The callback of ``EpisodeRunner``: one mp4 per episode (``episode_NNNN.mp4``), and
    ``episode_NNNN.gif`` for episode ``gif_episode``."""
    from envs.video_io import write_mp4

    def write(index: int, frames: list[np.ndarray], goal: np.ndarray,
              captions: list[StepCaption], previews: list[np.ndarray | None] | None = None
              ) -> None:
        """``previews``: per frame, the plan's predicted end rendered (models with a state
        readout), or None for no third panel."""
        ends = previews if previews is not None else [None] * len(frames)
        shown = [captioned_frame(frame, goal, caption, scale, end, previews is not None)
                 for frame, caption, end in zip(frames, captions, ends, strict=True)]
        write_mp4(folder / f"episode_{index:04d}.mp4", np.stack(shown), fps=fps, lossless=False)
        if index == gif_episode:
            write_gif(folder / f"episode_{index:04d}.gif", shown, fps)

    return write
