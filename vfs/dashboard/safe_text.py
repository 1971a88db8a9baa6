"""Text that a visitor or a file name controls, made safe to show: it is shown as text, never as markup.

Streamlit renders markdown (links, images, emphasis, autolinked URLs, ``:color[…]`` directives,
``$math$``) in messages, captions, labels and expander titles, and plotly renders a subset of HTML
(``<a href>``, ``<b>``, ``<br>``) in hover texts, tick labels, legends and treemap labels. A link
parameter or a folder named ``[Sign in](https://evil.example)`` must appear as those characters,
so every such value passes through :func:`as_markdown_text` or :func:`as_plotly_text` where it
meets the markup, and only there (the escaped text is for rendering, not for comparing).
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Mapping
from pathlib import Path

# CommonMark lets any ASCII punctuation be escaped with a backslash and shows it literally; escaping
# all of it also breaks Streamlit's own syntax and the autolinks that the parser itself recognises.
_MARKDOWN_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
# Escapes do not stop everything: Streamlit's markdown (remark-gfm) also turns ``http(s)://…``, ``www.…`` and
# ``a@b.c`` found in the parsed *text*, after escapes are resolved, into links. An invisible WORD JOINER (U+2060)
# where those begin (before ``://`` and ``@``, after ``www``) keeps them from being recognised; the text reads the same.
_AUTOLINK_STARTS = re.compile(r"(?=://)|(?<=www)(?=\.)|(?=@)", re.IGNORECASE)
WORD_JOINER = "\u2060"
# A line break would end a list item or paragraph and start a new block that the app did not write.
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]+")


def as_markdown_text(value: object) -> str:
    """``str(value)`` escaped so that Streamlit's markdown shows it literally, on one line."""
    one_line = _AUTOLINK_STARTS.sub(WORD_JOINER, _LINE_BREAKS.sub(" ", str(value)))
    return _MARKDOWN_PUNCTUATION.sub(lambda found: "\\" + found.group(), one_line)


def as_plotly_text(value: object) -> str:
    """``str(value)`` escaped so that plotly's HTML subset shows it literally (plotly decodes the entities)."""
    return html.escape(str(value), quote=False)


def hide_paths(message: str, names: Mapping[str | Path, str]) -> str:
    """``message`` with each server path in ``names`` replaced by its name for visitors (longest path first)."""
    for path in sorted(map(str, names), key=len, reverse=True):
        message = message.replace(path, names[path] if path in names else names[Path(path)])
    return message
