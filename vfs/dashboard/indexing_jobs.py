"""Index builds in background threads, one per cache, with progress and cancellation.

The dashboard keeps one :class:`IndexJobs` for the whole server, so two browser tabs asking
for the same missing cache share one build, and a build outlives the page that started it.

Cancel answers at once, whatever the batch size: the job counts as cancelled from that moment, while its
thread finishes the batch in flight, stores the images it finished and stops (a build started again
meanwhile waits for it on the cache folder's lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from vfs.cache.indexing import IndexSummary, Progress
from vfs.errors import VfsError

log = logging.getLogger(__name__)

#: ``build(progress, cancel)``: runs the index build, reporting progress and honouring cancel.
Build = Callable[[Callable[[Progress], None], threading.Event], IndexSummary]


class JobState(Enum):
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass
class IndexJob:
    path: Path  # the cache being built
    description: str
    started: float = field(default_factory=time.time)
    progress: Progress | None = None
    summary: IndexSummary | None = None
    error: str | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def state(self) -> JobState:
        if self.stopping:
            return JobState.CANCELLED
        if self._thread is not None and self._thread.is_alive():
            return JobState.RUNNING
        if self.error is not None:
            return JobState.FAILED
        if self.summary is not None and self.summary.cancelled:
            return JobState.CANCELLED
        return JobState.DONE

    @property
    def fraction(self) -> float:
        if self.progress is None or self.progress.total == 0:
            return 0.0
        return min(1.0, self.progress.done / self.progress.total)

    @property
    def stopping(self) -> bool:
        """Cancelled, and still finishing the batch in flight (whose images it stores)."""
        return self.cancel_event.is_set() and self._thread is not None and self._thread.is_alive()

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the build's thread has stopped (a cancelled one after storing what it finished)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def _run(self, build: Build) -> None:
        try:
            self.summary = build(self._report, self.cancel_event)
        except VfsError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a failed build is shown to the user, not raised in a thread
            log.exception("index build of %s failed", self.path)
            self.error = f"{type(exc).__name__}: {exc}"

    def _report(self, progress: Progress) -> None:
        self.progress = progress


class IndexJobs:
    """The builds started in this process, by cache path."""

    def __init__(self) -> None:
        self._jobs: dict[Path, IndexJob] = {}
        self._lock = threading.Lock()

    def start(self, path: Path, description: str, build: Build) -> IndexJob:
        """Start building ``path``, or return the build of it that is already running."""
        with self._lock:
            job = self._jobs.get(path)
            if job is not None and job.state is JobState.RUNNING:
                return job
            job = IndexJob(path, description)
            job._thread = threading.Thread(target=job._run, args=(build,), name=f"vfs-index-{path.name}", daemon=True)
            self._jobs[path] = job
            job._thread.start()
            return job

    def get(self, path: Path) -> IndexJob | None:
        with self._lock:
            return self._jobs.get(path)

    def running(self) -> list[IndexJob]:
        with self._lock:
            return [job for job in self._jobs.values() if job.state is JobState.RUNNING]

    def forget(self, path: Path) -> None:
        """Drop a finished job's record (a running one is kept)."""
        with self._lock:
            job = self._jobs.get(path)
            if job is not None and job.state is not JobState.RUNNING:
                del self._jobs[path]
