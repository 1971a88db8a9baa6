"""Everything the Streamlit dashboard does except layout, with no Streamlit import.

Owns: how the app was started (:mod:`.config`), the sidebar's selection (:mod:`.selection`), the
query image (:mod:`.query_images`), running and describing a search (:mod:`.searching`), the
object-size, region-set and mode queries (:mod:`.queries`), gallery captions (:mod:`.gallery`),
drawings as regions (:mod:`.canvas`), searches as links (:mod:`.links`), uploaded queries (:mod:`.uploads`),
what a hosted deployment allows (:mod:`.deployment`), indexing in background threads
(:mod:`.indexing_jobs`) and what a build costs (:mod:`.build_cost`), figures (:mod:`.plots`),
visitor-controlled text shown as text (:mod:`.safe_text`) and the demo dataset (:mod:`.demo`).

May import anything in :mod:`vfs` but :mod:`vfs.notebook`. The pages in ``app_pages/`` call this;
it never imports ``streamlit`` (a test checks), so all of it is tested without a browser.
"""
