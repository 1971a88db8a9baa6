"""The match dialog's explanations: why this match (pixel attribution) and the channels that make it.

Wiring only; the computations are :mod:`vfs.analysis.attribution` and :mod:`vfs.analysis.units`.
"""

from __future__ import annotations

import streamlit as st
from PIL import Image

from vfs.analysis.attribution import ATTRIBUTION_METHODS, DEFAULT_METHOD, Attribution, match_attribution
from vfs.analysis.units import ChannelContributions, channel_contributions, channel_name, region_query
from vfs.cache.catalog import manifest_token
from vfs.dashboard.safe_text import as_markdown_text
from vfs.dashboard.searching import SearchOutcome
from vfs.dashboard.selection import Selection
from vfs.errors import VfsError
from vfs.feature_search import FeatureSearch
from vfs.pictures import attribution_picture, jpeg_bytes
from vfs.similarity.exact import Match

UNITS_PAGE = "app_pages/units.py"
#: Session key of the unit the dialog hands to the Units page: (layer name, channel).
UNIT_REQUEST = "unit_request"
TABLE_UNITS = 10
BUTTON_UNITS = 5
#: A recomputed score further than this from the cached one means the image changed since indexing.
SCORE_TOLERANCE = 0.01


def _match_key(search: FeatureSearch, outcome: SearchOutcome, match: Match) -> tuple:
    """What a memoised explanation depends on: the cache's version, the query, the region and the match."""
    return (str(search.cache_path), manifest_token(search.cache_path), outcome.query.key, outcome.region.token,
            outcome.region_alone, match.path, match.window)


@st.cache_data(max_entries=64, show_spinner=False)
def _contributions(key: tuple, _search: FeatureSearch, _outcome: SearchOutcome, _match: Match) -> ChannelContributions:
    query = region_query(_search, _outcome.query.source(_search.data), _outcome.region, _outcome.region_alone)
    return channel_contributions(query, _search.cache.features(_match.index), _match.window)


@st.cache_data(max_entries=16, show_spinner="Running the model backward on this image…")
def _attribution(key: tuple, method: str, _search: FeatureSearch, _outcome: SearchOutcome,
                 _match: Match) -> Attribution:
    query = region_query(_search, _outcome.query.source(_search.data), _outcome.region, _outcome.region_alone)
    return match_attribution(_search, query, _match, method)


def why_this_match(current: Selection, search: FeatureSearch, outcome: SearchOutcome, match: Match,
                   picture: Image.Image, full_size: tuple[int, int]) -> None:
    """On demand (it runs the model backward), the pixels of ``picture`` that drive the match's score."""
    if not st.toggle("Why this match", key="why-match",
                     help="Which pixels of this image drive its score: the gradient of the score with respect "
                          f"to {current.layer.name}'s activations, upsampled onto the image."):
        st.caption("Turn on to attribute the score to this image's pixels (runs the model backward once).")
        return
    method = st.radio("Attribution", list(ATTRIBUTION_METHODS), key="why-method", horizontal=True,
                      index=list(ATTRIBUTION_METHODS).index(DEFAULT_METHOD),
                      help="gradient×activation: the positions inside the window that raise the score most. "
                           "grad-cam: where the channels that raise the score are active, anywhere in the image.")
    try:
        attribution = _attribution(_match_key(search, outcome, match), method, search, outcome, match)
    except VfsError as exc:
        st.error(as_markdown_text(exc))
        return
    st.image(jpeg_bytes(attribution_picture(picture, attribution.upsampled(picture.size), match.box, full_size)),
             width="stretch", caption=f"Why this match: {method} at {current.layer.name} (bright: raises the "
                                      f"score); recomputed score {attribution.score:.4f}")
    if abs(attribution.score - match.score) > SCORE_TOLERANCE:
        st.warning(f"Recomputed, the score is {attribution.score:.4f}, not {match.score:.4f}: the image may have "
                   "changed since it was indexed; update the index.")


def open_unit(layer: str, channel: int) -> None:
    st.session_state[UNIT_REQUEST] = (layer, channel)
    st.switch_page(UNITS_PAGE)


def top_units(current: Selection, search: FeatureSearch, outcome: SearchOutcome, match: Match) -> None:
    """The channels whose terms make most of the match's cosine, each a click away from its exemplars."""
    try:
        parts = _contributions(_match_key(search, outcome, match), search, outcome, match)
    except VfsError as exc:
        st.error(as_markdown_text(exc))
        return
    top = parts.top(TABLE_UNITS)
    layer = current.layer.name
    st.markdown(f"**Channels that make this match** (of {len(parts.terms)} at {layer}; share of the cosine's "
                f"numerator, Σ over the window of mask²·query·result per channel)")
    st.dataframe([{"unit": channel_name(layer, int(c)), "share": f"{parts.shares[c]:.1%}",
                   "part of the score": round(float(parts.cosine_terms[c]), 4)} for c in top], hide_index=True)
    buttons = st.container(horizontal=True, gap="small")
    for channel in top[:BUTTON_UNITS]:
        if buttons.button(f"{channel_name(layer, int(channel))} · {parts.shares[channel]:.1%}", key=f"unit-{channel}",
                          help="Show the dataset patches that excite this channel most"):
            open_unit(layer, int(channel))
