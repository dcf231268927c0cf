"""Widgets several nodes share, so that their ranges and steps are one rule: the frame rate and
the motion of a video."""

from __future__ import annotations

from ..nova.io.media import MAX_FPS, MIN_FPS
from .compat import io


def fps_input(tooltip: str):
    """Frames per second, in the range the engine and the video writer accept (trained at 12)."""
    return io.Float.Input("fps", default=12.0, min=MIN_FPS, max=MAX_FPS, step=0.5, tooltip=tooltip)


def motion_flow_input(tooltip: str):
    """NOVA's motion conditioning (the official default 5)."""
    return io.Float.Input("motion_flow", default=5.0, min=0.0, max=20.0, step=0.1, tooltip=tooltip)
