"""The demo dataset: 400 CC0 photographs of clothes in ten labelled folders (dress, hat, … t-shirt),
shipped in the repository's ``data/clothing`` with their LICENSE and README.

``make app``, ``streamlit run app.py`` and ``deploy/cloud.toml`` open it; like the cache folder it is
relative to the working folder, which is the repository's when the dashboard is started as documented.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path("data/clothing")
