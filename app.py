"""Visual Feature Search dashboard: ``streamlit run app.py [-- --config FILE --data DIR --cache-dir DIR --read-only]``.

With no arguments it opens on the bundled tf_efficientnet_lite0 weights and the demo dataset shipped in
data/clothing, so it works on a fresh, offline machine. .streamlit/config.toml applies when it is started
from this folder.
"""

from pathlib import Path

import streamlit as st

from app_pages.shared import common

# a file, not a :material: or emoji icon: Streamlit fetches those favicons from a web service
FAVICON = Path(__file__).parent / "app_pages" / "shared" / "favicon.png"
st.set_page_config(page_title="Visual Feature Search", page_icon=str(FAVICON), layout="wide")
common.page_style()
common.keep_settings()
common.upload_sweeper()  # started once per server
st.session_state["config"] = common.app_config()
common.sign_in_gate(st.session_state["config"])  # stops here for visitors a deployment does not let in
common.read_link_once()
st.session_state["selection"] = common.sidebar(st.session_state["config"])
# The page scripts live in app_pages/, not pages/: when a server's first session starts, Streamlit (1.36 up to at
# least 1.67) checks for a pages/ folder beside app.py and, if there is one, runs every script in its old
# pages/-folder mode, which never executes this file: no sign-in gate, no sidebar, no st.navigation.
navigation = st.navigation([
    st.Page("app_pages/search.py", title="Search", icon=":material/image_search:", default=True),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
    st.Page("app_pages/map.py", title="Dataset map", icon=":material/account_tree:", url_path="map"),
    st.Page("app_pages/caches.py", title="Feature caches", icon=":material/storage:", url_path="caches"),
    st.Page("app_pages/units.py", title="Units", icon=":material/neurology:", url_path="units"),
])
navigation.run()
