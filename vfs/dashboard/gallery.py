"""What the search gallery says under and beside its thumbnails (Streamlit-free, so it is tested alone).

Captions are plain text: the page passes every name through ``as_markdown_text`` on its way out."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

M = TypeVar("M")

#: A file name in a thumbnail caption is cut to about this many characters (the full path is in the
#: Details button's tooltip), so a caption takes two lines at most instead of breaking a name over four.
SHORT_NAME_CHARS = 26


def short_file_name(path: str, max_chars: int = SHORT_NAME_CHARS) -> str:
    """The file's name without its folders, with its middle elided when long: the start tells a
    class prefix (``n03425413_``), the end the number and extension."""
    name = path.rsplit("/", 1)[-1]
    if len(name) <= max_chars:
        return name
    keep = max_chars - 1
    head = keep // 2
    return f"{name[:head]}…{name[len(name) - (keep - head):]}"


def thumbnail_caption(rank: int, score: float, label: str | None, path: str, size_note: str | None = None) -> str:
    """``12. 0.873 · dress · n0342…_1234.JPEG``: rank, score, label, short file name."""
    parts = [f"{rank}. {score:.3f}"]
    parts += [label] if label else []
    parts += [size_note] if size_note else []
    return " · ".join([*parts, short_file_name(path)])


def gallery_caption(shown: int, searched: int, search_number: int, filters: tuple[str, ...] = (),
                    approximate: bool = False, shareable: bool = False) -> str:
    """The line that ends the gallery: how many of how many, the filters applied, and which search."""
    line = f"Top {shown} of {searched:,} images" + (", approximate" if approximate else "")
    line += "".join(f" · {described}" for described in filters)
    line += f" (search #{search_number})"
    return line + (" · the page's address now reproduces this search" if shareable else "")


def thumbnails_of(matches: Sequence[M], earlier: Iterable[tuple[M, bytes]], key: Callable[[M], Hashable],
                  make: Callable[[list[M]], list[bytes]]) -> list[bytes]:
    """Each match's thumbnail: the one an earlier gallery made for a match of the same ``key``, else made now by
    ``make`` (the missing ones in one call, which decodes them in parallel)."""
    known = {key(match): thumbnail for match, thumbnail in earlier}
    missing = [match for match in matches if key(match) not in known]
    known.update(zip(map(key, missing), make(missing)))
    return [known[key(match)] for match in matches]
