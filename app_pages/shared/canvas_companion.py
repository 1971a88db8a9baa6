"""The drawing canvas's companion in the page: hides the canvas's own toolbar and sends a stroke on mouse-up.

streamlit-drawable-canvas 0.13 has no option for either; canvas_companion.js says how it does them.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import streamlit as st

_JS = Path(__file__).with_name("canvas_companion.js").read_text(encoding="utf-8")


def attach(canvas_key: str) -> None:
    """Mount the companion beside the canvas keyed ``canvas_key``; a new key (another query image) makes it look
    for the new canvas's toolbar at once. The page gets a checksum of the key, not the file name it holds."""
    # declared on every run, not once at import: a Streamlit runtime other than the one that first imported this
    # module (Streamlit < 1.67's AppTest makes one per test) has its own component registry
    companion = st.components.v2.component("vfs.canvas_companion", js=_JS, isolate_styles=False)
    companion(key="canvas_companion", data={"canvas": zlib.crc32(canvas_key.encode())}, width="content",
              height="content")
