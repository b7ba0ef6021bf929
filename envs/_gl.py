"""Headless OpenGL set-up for MuJoCo rendering.

MuJoCo picks its GL backend from ``MUJOCO_GL`` when it is first imported, so the default has to
be chosen before ``import mujoco``. Without a display we default to EGL (Mesa's software EGL
works on machines without a GPU); a user's explicit ``MUJOCO_GL`` always wins.
"""

from __future__ import annotations

import importlib.util
import os
import sys

GL_HELP = (
    "install Mesa EGL (Debian/Ubuntu: apt install libegl1 libgl1) or set "
    "MUJOCO_GL=osmesa with libosmesa6 and PYOPENGL_PLATFORM=osmesa"
)


class RenderingUnavailableError(RuntimeError):
    """No OpenGL context could be created for offscreen rendering."""


def configure_headless_gl() -> str | None:
    """Default ``MUJOCO_GL=egl`` when no display is present; return the backend in use."""
    if "MUJOCO_GL" not in os.environ and sys.platform.startswith("linux"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            os.environ["MUJOCO_GL"] = "egl"
    backend = os.environ.get("MUJOCO_GL")
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def preload_llvm_users() -> None:
    """Load triton (shipped with CUDA builds of torch) before the first GL context exists.

    Mesa's software rasteriser and triton both carry their own LLVM. If Mesa is loaded first,
    triton's static initialisers crash the whole process the moment torch imports it later
    (for example through ``import timm``). Loading triton first avoids the clash.
    """
    if "triton" in sys.modules:
        return
    try:
        if importlib.util.find_spec("triton") is not None:
            import triton  # noqa: F401
    except Exception:  # a broken triton install must not stop rendering
        pass


def import_mujoco():
    """Import mujoco with the headless default applied; a bad GL backend becomes one clear line."""
    configure_headless_gl()
    preload_llvm_users()
    try:
        import mujoco
    except Exception as exc:  # mujoco checks MUJOCO_GL at import time
        raise RenderingUnavailableError(
            f"cannot load MuJoCo's OpenGL backend (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): "
            f"{_first_line(exc)}; {GL_HELP}"
        ) from exc
    return mujoco


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def make_renderer(model, height: int, width: int):
    """Create a ``mujoco.Renderer`` or raise a one-line, actionable error."""
    mujoco = import_mujoco()
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as exc:  # mujoco raises several types depending on the backend
        backend = os.environ.get("MUJOCO_GL", "default")
        raise RenderingUnavailableError(
            f"cannot create an OpenGL context for MuJoCo (MUJOCO_GL={backend}): "
            f"{_first_line(exc)}; "
            f"{GL_HELP}"
        ) from exc
