"""Every keyword argument the pages pass to a ``st.*`` function is one that the installed Streamlit takes.

A keyword that a release lacks fails only when its page runs that line; read statically, every call is
checked, so `make floors` (Streamlit at its floor) finds one that is newer than the floor.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import streamlit as st

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "app.py", *sorted((REPO / "app_pages").rglob("*.py"))]


def streamlit_calls() -> list[tuple[str, str, ast.Call]]:
    """(where, ``st.name``, call) for every call of an attribute of ``st`` in the pages."""
    calls = []
    for path in PAGES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            chain, value = [], node.func
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id == "st":
                calls.append((f"{path.relative_to(REPO)}:{node.lineno}", "st." + ".".join(reversed(chain)), node))
    return calls


def test_every_keyword_the_pages_pass_to_streamlit_exists_in_this_release():
    missing, checked = [], 0
    for where, name, call in streamlit_calls():
        function = st
        for attribute in name.split(".")[1:]:
            function = getattr(function, attribute, None)
        if function is None:
            missing.append(f"{where}: {name} does not exist")
            continue
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):  # not a function (st.session_state, st.query_params, ...)
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        for keyword in call.keywords:
            checked += 1
            if keyword.arg is not None and keyword.arg not in parameters:
                missing.append(f"{where}: {name}({keyword.arg}=)")
    assert checked > 100, "the pages' calls were not found"
    assert not missing, f"Streamlit {st.__version__} lacks: " + "; ".join(missing)
