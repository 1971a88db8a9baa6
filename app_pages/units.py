"""Units page: the dataset patches that excite one channel of the selected layer most."""

from __future__ import annotations

import streamlit as st

from app_pages.shared import common
from app_pages.shared.units_panel import UNIT_REQUEST
from vfs.analysis.units import Exemplar, channel_name, top_activations
from vfs.cache.catalog import manifest_token
from vfs.cache.feature_cache import FeatureCache
from vfs.dashboard.safe_text import as_markdown_text
from vfs.dashboard.selection import Selection
from vfs.pictures import match_jpegs

COLUMNS = 6
THUMBNAIL_SIDE = 200
MAX_EXEMPLARS = 48
#: Widget key of the channel, and where the last channel shown per layer outlives the page.
CHANNEL_KEY, LAST_CHANNELS = "units_channel", "units_last_channels"


@st.cache_data(max_entries=64, show_spinner="Scanning the cache for this channel…")
def exemplars(cache_path: str, token: int | None, channel: int, k: int,
              _cache: FeatureCache) -> tuple[list[Exemplar], list[bytes]]:
    """The channel's top ``k`` exemplars and their thumbnails, once per cache version and channel."""
    found = top_activations(_cache, channel, k)
    assert _cache.dataset_root is not None
    return found, match_jpegs([(_cache.dataset_root / e.path, e.box) for e in found], THUMBNAIL_SIDE)


def choose_channel(current: Selection, channels: int) -> int:
    """The channel handed over by the match dialog, else the last one shown at this layer."""
    layer = current.layer.name
    last: dict[str, int] = st.session_state.setdefault(LAST_CHANNELS, {})
    request = st.session_state.pop(UNIT_REQUEST, None)
    if request is not None and request[0] == layer:
        st.session_state[CHANNEL_KEY] = request[1]
    elif request is not None:
        st.warning(f"{channel_name(*request)} belongs to {request[0]}, but the sidebar now selects {layer}.")
    if CHANNEL_KEY not in st.session_state:
        st.session_state[CHANNEL_KEY] = last.get(layer, 0)
    st.session_state[CHANNEL_KEY] = min(int(st.session_state[CHANNEL_KEY]), channels - 1)  # after a layer change
    channel = int(st.number_input(f"Channel of {layer} (0 to {channels - 1})", min_value=0, max_value=channels - 1,
                                  key=CHANNEL_KEY))
    last[layer] = channel
    return channel


def page() -> None:
    current = common.selection()
    st.header("Units")
    if current is None:
        st.info("Choose a dataset folder, a model and a layer in the sidebar.")
        return
    st.caption(f"{as_markdown_text(current.describe())} · the dataset patches where one channel of the layer is strongest: each "
               "image's best grid cell, from the feature cache (the model does not run).")
    search = common.opened_search(current)
    if search is None:
        return
    if len(search.cache) == 0:
        st.info("The feature cache is empty: build it on the Search or Feature caches page.")
        return
    channel_column, k_column = st.columns(2)
    with channel_column:
        channel = choose_channel(current, search.cache.channels)
    most = min(MAX_EXEMPLARS, len(search.cache))
    k = k_column.slider("Exemplars", 1, most, min(12, most), key="units_k") if most > 1 else 1
    found, thumbnails = exemplars(str(current.cache_path), manifest_token(current.cache_path), channel, k, search.cache)
    st.subheader(channel_name(current.layer.name, channel))
    for start in range(0, len(found), COLUMNS):
        for offset, column in enumerate(st.columns(COLUMNS)):
            if start + offset >= len(found):
                break
            exemplar = found[start + offset]
            label = f" · {as_markdown_text(search.label_name(exemplar.label))}" if exemplar.label else ""
            row, col = exemplar.cell
            column.image(thumbnails[start + offset], width="stretch",
                         caption=f"{start + offset + 1}. {exemplar.activation:.3f}{label} · "
                                 f"{as_markdown_text(exemplar.path.rsplit('/', 1)[-1])} · cell ({row}, {col})")


page()
