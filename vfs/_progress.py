"""A dependency-free progress line for the command line: images done, images/s and ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from vfs.cache.indexing import Progress


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def describe(progress: Progress) -> str:
    percent = 100.0 * progress.done / progress.total if progress.total else 100.0
    return (f"{progress.done}/{progress.total} images ({percent:.0f}%) · "
            f"{progress.images_per_second:.1f} img/s · ETA {format_duration(progress.eta_seconds)}")


class ProgressBar:
    """Redraws one line on a terminal; elsewhere (logs, CI) prints a line every few seconds."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, interval: float = 5.0):
        self.label = label
        self.stream = stream
        self.interval = interval
        self._last = 0.0
        self._tty = stream.isatty()

    def __call__(self, progress: Progress) -> None:
        finished = progress.done >= progress.total
        now = time.monotonic()
        if not self._tty and not finished and now - self._last < self.interval:
            return
        self._last = now
        width = 24
        filled = int(width * progress.done / progress.total) if progress.total else width
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {describe(progress)}"
        self.stream.write(f"\r{line}\033[K" if self._tty else line + "\n")
        if self._tty and finished:
            self.stream.write("\n")
        self.stream.flush()
