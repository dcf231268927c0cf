"""A terminal progress bar for one generation: set steps of every frame, with ETA, on stderr.

On a terminal it is a tqdm bar redrawn in place; when stderr is a file or a pipe (logs, CI) it
prints one line per finished frame instead of carriage-return redraws."""

from __future__ import annotations

import sys
import time


class StepProgressBar:
    """Context manager; calling it with a :class:`nova.sampling.sampler.Progress` advances the bar to that
    tick. ``disable=True`` (``disable_progress_bar``) draws nothing."""

    def __init__(self, total: int, disable: bool = False, desc: str = "NOVA", file=None):
        self.total, self.disable, self.desc = int(total), disable, desc
        self.file = file or sys.stderr
        self._bar = None
        self._start = None

    def __enter__(self):
        self._start = time.monotonic()
        if not self.disable and self.total > 0 and _is_terminal(self.file):
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total, desc=self.desc, unit="step", file=self.file, dynamic_ncols=True, leave=False
            )
        return self

    def __call__(self, progress) -> None:
        if self.disable or self.total <= 0:
            return
        frame = f"frame {progress.frame + 1}/{progress.num_frames}"
        if self._bar is not None:
            self._bar.set_postfix_str(frame, refresh=False)
            self._bar.update(progress.tick - self._bar.n)
        elif progress.step == progress.num_steps:  # a line per finished frame
            elapsed = time.monotonic() - self._start
            eta = elapsed / progress.tick * (self.total - progress.tick)
            print(
                f"{self.desc}: {frame} done, {progress.tick}/{self.total} set steps, {elapsed:.1f}s, ETA {eta:.1f}s",
                file=self.file,
                flush=True,
            )

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
        return False


def _is_terminal(file) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False
