"""A terminal progress bar for a generation: set steps of every frame, with ETA, on stderr."""

from __future__ import annotations

import sys


class ProgressBar:
    """Context manager; calling it with a :class:`nova.sampling.Progress` advances the bar to that
    tick. ``disable=True`` (``disable_progress_bar``) draws nothing."""

    def __init__(self, total: int, disable: bool = False, desc: str = "NOVA", file=None):
        self.total, self.disable, self.desc, self.file = int(total), disable, desc, file
        self._bar = None

    def __enter__(self):
        if not self.disable and self.total > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.desc, unit="step", file=self.file or sys.stderr,
                             dynamic_ncols=True, leave=False)
        return self

    def __call__(self, progress) -> None:
        if self._bar is None:
            return
        self._bar.set_postfix_str(f"frame {progress.frame + 1}/{progress.num_frames}", refresh=False)
        self._bar.update(progress.tick - self._bar.n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
        return False
