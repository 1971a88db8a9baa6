"""Visual Feature Search dashboard: ``streamlit run app.py [-- --data DIR --cache-dir DIR --read-only]``.

With no arguments it opens on the bundled tf_efficientnet_lite0 weights and demo photographs
gathered from installed packages, so it works on a fresh, offline machine.
"""

import os
import sys

import streamlit as st

from app_pages import common
from vfs.dashboard import parse_app_args

st.set_page_config(page_title="Visual Feature Search", page_icon=":material/image_search:", layout="wide")
st.session_state["config"] = parse_app_args(sys.argv[1:], os.environ)
common.read_link_once()
st.session_state["selection"] = common.sidebar(st.session_state["config"])
# The page scripts live in app_pages/, not pages/: a pages/ folder next to app.py switches streamlit to its
# older multipage mode, which on reruns runs a page script directly and skips this file (and the sidebar).
navigation = st.navigation([
    st.Page("app_pages/search.py", title="Search", icon=":material/image_search:", default=True),
    st.Page("app_pages/index.py", title="Index", icon=":material/storage:", url_path="index"),
])
navigation.run()
