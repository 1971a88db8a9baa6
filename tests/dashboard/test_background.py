"""Background index builds: progress, cancellation, one build per cache, failures."""

from __future__ import annotations

import threading
from pathlib import Path

from vfs.cache.indexing import IndexSummary, Progress
from vfs.dashboard.indexing_jobs import IndexJobs, JobState
from vfs.errors import DatasetError


def summary(cancelled: bool = False) -> IndexSummary:
    return IndexSummary(Path("cache"), [], images=3, indexed=3, unchanged=0, removed=0, cancelled=cancelled)


def slow_build(release: threading.Event, total: int = 100):
    """A build that reports progress, then waits to be released or cancelled."""
    def build(progress, cancel):
        for done in range(1, total + 1):
            progress(Progress(done, total, done / 10))
            if done == total // 2:
                while not (release.is_set() or cancel.is_set()):
                    release.wait(0.01)
            if cancel.is_set():
                return summary(cancelled=True)
        return summary()
    return build


def test_progress_is_visible_while_running_and_the_summary_after():
    jobs, release = IndexJobs(), threading.Event()
    job = jobs.start(Path("a"), "dataset · model", slow_build(release))
    while job.progress is None or job.progress.done < 50:
        threading.Event().wait(0.01)
    assert job.state is JobState.RUNNING and job.fraction == 0.5
    assert jobs.running() == [job]
    release.set()
    assert job.wait(5) and job.state is JobState.DONE
    assert job.summary.images == 3 and job.fraction == 1.0
    assert jobs.running() == []


def test_cancel_stops_the_build():
    jobs = IndexJobs()
    job = jobs.start(Path("a"), "x", slow_build(threading.Event()))
    job.cancel()
    assert job.wait(5)
    assert job.state is JobState.CANCELLED and job.summary.cancelled
    assert job.progress.done == 50


def test_cancel_answers_at_once_while_the_batch_in_flight_finishes():
    """A build busy with a model batch notices Cancel only after it: the job is cancelled from the click on (the page
    stops showing progress), and its thread still finishes, so what that batch computed is stored."""
    jobs, batch_done = IndexJobs(), threading.Event()

    def busy_build(progress, cancel):
        progress(Progress(8, 100, 0.1))
        batch_done.wait(5)  # a batch the build cannot interrupt
        return summary(cancelled=cancel.is_set())

    job = jobs.start(Path("a"), "x", busy_build)
    assert job.state is JobState.RUNNING and jobs.running() == [job]
    job.cancel()
    assert job.state is JobState.CANCELLED and job.stopping and jobs.running() == []
    assert not job.wait(0.05)  # the thread is still in its batch
    again = jobs.start(Path("a"), "x", lambda progress, cancel: summary())  # a restart does not wait for it here
    assert again is not job
    batch_done.set()
    assert job.wait(5) and not job.stopping and job.state is JobState.CANCELLED and job.summary.cancelled
    assert again.wait(5) and again.state is JobState.DONE


def test_one_build_per_cache_path():
    jobs, release = IndexJobs(), threading.Event()
    first = jobs.start(Path("a"), "x", slow_build(release))
    assert jobs.start(Path("a"), "x", slow_build(release)) is first
    other = jobs.start(Path("b"), "y", slow_build(release))
    assert other is not first and len(jobs.running()) == 2
    release.set()
    first.wait(5)
    again = jobs.start(Path("a"), "x", lambda progress, cancel: summary())  # a finished build can be redone
    assert again is not first and again.wait(5) and jobs.get(Path("a")) is again


def test_failures_are_kept_as_messages():
    jobs = IndexJobs()

    def missing(progress, cancel):
        raise DatasetError("No images found in /nowhere")

    def broken(progress, cancel):
        raise RuntimeError("disk on fire")

    expected = jobs.start(Path("a"), "x", missing)
    unexpected = jobs.start(Path("b"), "y", broken)
    assert expected.wait(5) and unexpected.wait(5)
    assert expected.state is JobState.FAILED and expected.error == "No images found in /nowhere"
    assert unexpected.state is JobState.FAILED and unexpected.error == "RuntimeError: disk on fire"


def test_forget_drops_finished_builds_only():
    jobs, release = IndexJobs(), threading.Event()
    running = jobs.start(Path("a"), "x", slow_build(release))
    jobs.forget(Path("a"))
    assert jobs.get(Path("a")) is running
    release.set()
    running.wait(5)
    jobs.forget(Path("a"))
    assert jobs.get(Path("a")) is None
