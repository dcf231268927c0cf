"""One progress line for a whole batch run, on rank 0.

Every process appends its finished outputs to the manifest, so rank 0 follows the manifest (a
background thread reading new lines) and needs no messages from the others. The line shows done
of total, videos per hour since this start and the time left at that rate. On a terminal it
redraws in place; in a log file it is printed every ``log_every`` seconds.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Optional, TextIO


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


class ProgressBar:
    def __init__(
        self,
        manifest_path: str,
        total: int,
        done_before: int,
        unit: str = "videos",
        stream: Optional[TextIO] = None,
        poll: float = 1.0,
        log_every: float = 30.0,
    ):
        self.path, self.total, self.done_before, self.unit = manifest_path, total, done_before, unit
        self.stream = stream or sys.stderr
        self.poll, self.log_every = poll, log_every
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.made = self.failed = 0
        self._offset = os.path.getsize(manifest_path) if os.path.exists(manifest_path) else 0
        self._start = time.time()
        self._last_print = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="nova-batch-progress", daemon=True)

    def start(self) -> "ProgressBar":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._read_new()
        self._print(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _follow(self) -> None:
        while not self._stop.wait(self.poll):
            self._read_new()
            self._print()

    def _read_new(self) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # whole lines only; a line being written is read next time
        self._offset += end
        for raw in data[:end].splitlines():
            try:
                kind = json.loads(raw).get("kind")
            except (ValueError, AttributeError):
                continue
            self.made += kind == "done"
            self.failed += kind == "failed"

    def line(self) -> str:
        elapsed = max(time.time() - self._start, 1e-9)
        count = self.done_before + self.made + self.failed
        rate = self.made / elapsed * 3600
        left = self.total - count
        eta = format_duration(left / (self.made + self.failed) * elapsed) if self.made + self.failed else "?"
        width = 24
        filled = int(width * count / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"[{bar}] {count}/{self.total} {self.unit}{failed} | {rate:.1f} {self.unit}/hour | "
            f"elapsed {format_duration(elapsed)} | ETA {eta}"
        )

    def _print(self, force: bool = False) -> None:
        now = time.time()
        if self.tty:
            self.stream.write("\r" + self.line())
        elif force or now - self._last_print >= self.log_every:
            self.stream.write(self.line() + "\n")
            self._last_print = now
        else:
            return
        self.stream.flush()
