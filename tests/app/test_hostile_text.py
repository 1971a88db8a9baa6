"""Issue #17: link parameters and file names that hold markup are shown as text on every page.

The dataset's folder and file names, and the link's parameters, carry markdown links and images,
HTML and plotly tags; no element of any page may hold them unescaped (a link, an image fetched
from another host, bold text the app did not write).
"""

from __future__ import annotations

import json
import re

import pytest

from app_pages.shared.common import FIGURES_KEY
from tests.support.app_cases import IMAGE, LINK, canvas_rect, draw
from vfs.dashboard.query_images import QueryImage

pytestmark = pytest.mark.app

#: As each would appear in an element if it were not escaped.
MARKUP = ("](https://evil", "](http://127", "![t]", "**md**", "<a href", "<b>", "<br>", "evil.example",
          "127.0.0.1:9")
PAGES = ("app_pages/search.py", "app_pages/compare.py", "app_pages/map.py", "app_pages/caches.py",
         "app_pages/units.py")


#: Widgets whose values and options Streamlit shows as plain text (their labels are the app's own).
PLAIN_TEXT = ("Selectbox", "Multiselect", "TextInput")
#: Plotly shows markdown as plain text but renders a subset of HTML: these tags, as the hostile names write them,
#: must reach a figure entity-escaped (``&lt;b&gt;``); the app's own ``<br>`` in hover templates is not one of them.
PLOTLY_MARKUP = ("<a href", "<a ", "<b>x", "x<br>y", "<br>y")


def _strings(value: object) -> list[str]:
    """Every string in a decoded JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (key, *_strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def _figures(node) -> list[str]:
    """The strings of every plotly chart below ``node``, decoded (plotly's JSON writes ``<`` as ``\\u003c``)."""
    found = []
    if getattr(node, "type", None) == "plotly_chart":
        found += _strings(json.loads(node.proto.spec))
    children = getattr(node, "children", None) or {}
    for child in (children.values() if isinstance(children, dict) else children):
        found += _figures(child)
    return found


#: Proto fields that are not shown: a widget's id holds its key, which may name a file.
NOT_SHOWN = ("id", "form_id")


def _texts(message) -> list[str]:
    """The string fields of a proto message, nested ones included, except those never shown."""
    found = []
    for field, value in message.ListFields():
        if field.name in NOT_SHOWN:
            continue
        repeated = not isinstance(value, (str, bytes)) and hasattr(value, "__len__") and not hasattr(value, "ListFields")
        values = value if repeated else [value]
        for item in values:
            if isinstance(item, str):
                found.append(item)
            elif hasattr(item, "ListFields"):
                found += _texts(item)
    return found


def _shown_texts(node) -> list[str]:
    """The texts of the elements below ``node`` that render markdown (plotly charts have their own rule)."""
    shows_markdown = (getattr(node, "proto", None) is not None and type(node).__name__ not in PLAIN_TEXT
                      and getattr(node, "type", None) != "plotly_chart")
    found = _texts(node.proto) if shows_markdown else []
    children = getattr(node, "children", None) or {}
    for child in (children.values() if isinstance(children, dict) else children):
        found += _shown_texts(child)
    return found


def _unescaped(markup: str, texts: str) -> bool:
    """Whether ``markup`` is in ``texts`` other than behind a backslash (markdown then shows it literally)."""
    return re.search(r"(?<!\\)" + re.escape(markup), texts) is not None


def assert_nothing_unescaped(app) -> None:
    texts = "\n".join(_shown_texts(app._tree))
    leaked = [markup for markup in MARKUP if _unescaped(markup, texts)]
    assert not leaked, f"unescaped {leaked} in the page: " + " | ".join(
        text[:300] for text in _shown_texts(app._tree) if any(_unescaped(markup, text) for markup in leaked))
    figures = "\n".join(_figures(app._tree))
    leaked = [markup for markup in PLOTLY_MARKUP if markup in figures]
    assert not leaked, f"unescaped {leaked} in a plotly chart"


@pytest.mark.parametrize("param", ["model", "data", "layer", "q"])
@pytest.mark.parametrize("payload", [LINK, IMAGE, "**md** <b>x</b><br>"])
def test_link_parameters_are_shown_as_text(dashboard, constructed_case, param, payload):
    app = dashboard(constructed_case, query_params={param: payload})
    app.run()
    assert not app.exception, app.exception
    assert_nothing_unescaped(app)
    assert "Sign" not in payload or any("Sign in again" in p.replace("\\", "") for p in _shown_texts(app._tree))


def test_file_and_folder_names_are_shown_as_text_on_every_page(dashboard, hostile_case):
    app = dashboard(hostile_case)
    app.run()
    app.session_state["query"] = QueryImage.from_dataset(hostile_case.query)
    app.session_state[FIGURES_KEY] = True  # the figures are built only while their expander is open
    app.run()
    draw(app, canvas_rect(hostile_case.patch_box))
    app.run()
    assert not app.exception, app.exception
    assert app.session_state["last_search"].outcome.result.matches  # the gallery, its captions and figure are shown
    assert_nothing_unescaped(app)
    figures = _figures(app._tree)
    app.button(key="details-1").click().run()  # the match dialog
    assert_nothing_unescaped(app)
    for page in PAGES[1:]:
        app.switch_page(page).run()
        assert not app.exception, (page, app.exception)
        assert_nothing_unescaped(app)
        figures += _figures(app._tree)
    # the walk met the names in figures, escaped: the plotly rule was exercised
    assert any("&lt;b&gt;x&lt;br&gt;y" in text for text in figures)
