"""The gallery: its captions, and its thumbnails reused from an earlier gallery."""

from __future__ import annotations

from vfs.dashboard.gallery import SHORT_NAME_CHARS, gallery_caption, short_file_name, thumbnail_caption, thumbnails_of


def test_short_names_keep_both_ends_of_a_long_name():
    assert short_file_name("pasted/target.png") == "target.png"
    long = "n03425413/n03425413_10042_a_rather_long_name.JPEG"
    short = short_file_name(long)
    assert len(short) == SHORT_NAME_CHARS and "…" in short
    assert short.startswith("n03425413_") and short.endswith(".JPEG")


def test_thumbnail_captions_read_rank_score_label_name():
    assert thumbnail_caption(3, 0.87349, "dress", "clothes/dress_1.jpg") == "3. 0.873 · dress · dress_1.jpg"
    assert thumbnail_caption(1, 0.5, None, "a.png", "at ½×") == "1. 0.500 · at ½× · a.png"


def test_the_gallery_caption_names_its_filters():
    assert gallery_caption(12, 3925, 4) == "Top 12 of 3,925 images (search #4)"
    assert gallery_caption(12, 3925, 4, ("label: dress",), approximate=True, shareable=True) == (
        "Top 12 of 3,925 images, approximate · label: dress (search #4) · the page's address now reproduces "
        "this search")


def test_thumbnails_are_reused_by_key_and_the_missing_ones_made_in_one_call():
    made: list[list[str]] = []

    def make(missing: list[str]) -> list[bytes]:
        made.append(list(missing))
        return [name.encode() + b"-new" for name in missing]

    earlier = [("a", b"a-old"), ("b", b"b-old")]
    assert thumbnails_of(["b", "c", "a", "d"], earlier, lambda m: m, make) == [
        b"b-old", b"c-new", b"a-old", b"d-new"]
    assert made == [["c", "d"]]
