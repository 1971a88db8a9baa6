"""The notebook widget searches objects of other sizes when given ``scales`` and says so in its captions."""

from __future__ import annotations

from vfs.notebook.gallery import match_caption
from vfs.similarity.exact import Match


def test_a_match_at_another_size_says_so_in_its_caption():
    at_half = Match(0, "a/b.jpg", None, 0.5, (0, 0, 1, 1), (0, 0, 1, 1), 0.5)
    assert match_caption(1, at_half).endswith("0.5× size")
    assert "size" not in match_caption(1, Match(0, "a/b.jpg", None, 0.5, (0, 0, 1, 1), (0, 0, 1, 1)))
