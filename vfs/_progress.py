"""Indexing progress in words (the dashboard) and as a tqdm bar (the command line, notebooks)."""

from __future__ import annotations

from typing import TextIO

from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm

from vfs.cache.indexing import Progress


def describe(progress: Progress) -> str:
    percent = 100.0 * progress.done / progress.total if progress.total else 100.0
    eta = "--:--" if progress.eta_seconds is None else tqdm.format_interval(progress.eta_seconds)
    return f"{progress.done}/{progress.total} images ({percent:.0f}%) · {progress.images_per_second:.1f} img/s · ETA {eta}"


class ProgressBar:
    """A ``build_index`` progress callback drawn by tqdm: images done, images/s and ETA, on a terminal
    or as a notebook widget (``tqdm.auto``)."""

    def __init__(self, label: str, file: TextIO | None = None):
        self.label = label
        self.file = file
        self._bar: tqdm | None = None

    def __call__(self, progress: Progress) -> None:
        if self._bar is None:
            self._bar = auto_tqdm(total=progress.total, desc=self.label, unit="img", file=self.file)
        self._bar.total = progress.total
        self._bar.update(progress.done - self._bar.n)
        if progress.done >= progress.total:
            self._bar.close()
