"""Uploaded query images kept for links: stored by digest, found only by a well-formed id."""

from __future__ import annotations

import pytest

from vfs.dashboard.links import SharedSearch, from_params, to_params
from vfs.dashboard.uploads import UploadError, UploadStore, upload_id


def test_an_upload_is_stored_once_under_its_digest_and_read_back(tmp_path):
    store = UploadStore(tmp_path / "uploads")
    first = store.put(b"picture bytes")
    assert first == upload_id(b"picture bytes") and len(first) == 32
    assert store.put(b"picture bytes") == first
    assert store.get(first) == b"picture bytes"
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [first]  # no temporary file left behind


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "0" * 31, "0" * 33, "G" * 32, "%2e%2e%2f" + "0" * 23,
                                  "0" * 31 + "/", ""])
def test_anything_but_an_id_is_refused_before_a_file_is_opened(tmp_path, name):
    (tmp_path / "secret").write_bytes(b"not for visitors")
    with pytest.raises(UploadError, match="not an upload id"):
        UploadStore(tmp_path / "uploads").get(name)


def test_a_missing_upload_says_the_link_outlived_it(tmp_path):
    with pytest.raises(UploadError, match="no longer on this server"):
        UploadStore(tmp_path).get("0" * 32)


def test_an_unwritable_store_gives_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(UploadError, match="Could not keep the upload"):
        UploadStore(tmp_path / "file" / "uploads").put(b"x")


def test_links_carry_an_upload_and_its_region():
    from vfs.similarity.region import Region

    state = SharedSearch(upload="ab" * 16, region=Region(box=(1, 2, 30, 40)))
    params = to_params(state)
    assert params == {"u": "ab" * 16, "box": "1,2,30,40"}
    decoded, problems = from_params(params)
    assert problems == [] and decoded.upload == "ab" * 16 and decoded.region == state.region


def test_bad_upload_parameters_are_reported():
    decoded, problems = from_params({"u": "../../etc/passwd", "box": "1,2,3,4"})
    assert decoded.upload is None and decoded.region is None
    assert [str(p) for p in problems][0].startswith("u='../../etc/passwd' is not an upload id")
    decoded, problems = from_params({"u": "ab" * 16, "q": "a.png"})
    assert decoded.upload is None and decoded.query is None and "only one" in str(problems[0])


def test_the_least_recently_used_uploads_go_when_the_folder_is_full(tmp_path):
    import os

    store = UploadStore(tmp_path, max_bytes=250)
    first, second = store.put(b"a" * 100), store.put(b"b" * 100)
    os.utime(tmp_path / first, ns=(1, 1))
    os.utime(tmp_path / second, ns=(2, 2))
    store.get(first)  # opened again: now the most recently used
    third = store.put(b"c" * 100)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first, third])


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import vfs.dashboard.uploads

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vfs.dashboard.uploads.os, "replace", full)
    with pytest.raises(UploadError, match="No space left"):
        UploadStore(tmp_path).put(b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_store_opens_uploads_and_keeps_no_new_one(tmp_path):
    name = UploadStore(tmp_path).put(b"kept earlier")
    reader = UploadStore(tmp_path, writable=False)
    assert reader.get(name) == b"kept earlier"
    with pytest.raises(UploadError, match="read-only"):
        reader.put(b"new")


@pytest.mark.streamlit  # against Streamlit's own upload manager
def test_the_sweeper_releases_all_but_each_sessions_newest_upload_once_due():
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    from vfs.dashboard.uploads import UploadSweeper

    manager = MemoryUploadedFileManager("/_stcore/upload_file")
    for session, files in (("a", ["a1", "a2", "a3"]), ("b", ["b1"])):
        for file_id in files:
            manager.add_file(session, UploadedFileRec(file_id, f"{file_id}.png", "image/png", b"x" * 1000))
    now = [0.0]
    sweeper = UploadSweeper(manager, grace=30, clock=lambda: now[0])
    assert sweeper.sweep() == 0  # first seen now: a legitimate upload gets its grace period
    now[0] = 29.9
    assert sweeper.sweep() == 0
    now[0] = 30.0
    assert sweeper.sweep() == 2
    assert {s: list(f) for s, f in manager.file_storage.items()} == {"a": ["a3"], "b": ["b1"]}
    assert sum(stat.byte_length for stats in manager.get_stats().values() for stat in stats) == 2000  # bytes freed
    manager.add_file("a", UploadedFileRec("a4", "a4.png", "image/png", b"y"))  # a3 is now an older one
    assert sweeper.sweep() == 0
    now[0] = 60.0
    assert sweeper.sweep() == 1 and list(manager.file_storage["a"]) == ["a4"]
