"""The example notebooks run top to bottom as on a fresh machine: the shipped demo photos, no ../shared."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import nbformat

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def fresh_repo(tmp_path_factory) -> Path:
    """A repository-shaped folder with nothing beside it; data and caches land inside it.

    The notebooks share it, so what one indexed the next reuses (as in a real checkout).
    """
    root = tmp_path_factory.mktemp("fresh") / "repo"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOKS[0].with_name("example_data.py"), root / "notebooks")  # the notebooks' data helpers
    (root / "data").mkdir()
    (root / "data" / "clothing").symlink_to(NOTEBOOKS[0].parents[1] / "data" / "clothing")  # what a clone ships
    return root


def outputs_text(notebook: nbformat.NotebookNode) -> str:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_the_five_studies_are_there():
    assert [p.stem for p in NOTEBOOKS] == ["01-quick-start", "02-layers", "03-models", "04-domains", "05-labels"]


@pytest.mark.slow
@pytest.mark.torch  # the notebooks run models
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, fresh_repo):
    import nbformat  # the notebook tools are in the test extras, not in the small environments of other Pythons
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(fresh_repo / "notebooks")}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    text = outputs_text(notebook)
    assert "Data: the clothing demo" in text and "imagenette-val not found" in text
    assert (fresh_repo / "data" / "cache").is_dir() and (fresh_repo / "data" / "examples" / "clothing-12").is_dir()
    if path.stem == "01-quick-start":
        mimes = {key for cell in notebook.cells for output in cell.get("outputs", []) for key in output.get("data", {})}
        assert "application/vnd.jupyter.widget-view+json" in mimes and "1. 1.000  shoes" in text  # the query image itself, first
