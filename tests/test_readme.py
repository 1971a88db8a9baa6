"""The README's Python example runs as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow  # end to end, in a subprocess or over the whole demo
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(block for block in blocks if "FeatureSearch" in block)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "clothing").symlink_to(README.parent / "data" / "clothing")
    monkeypatch.chdir(tmp_path)  # the example writes data/cache where it runs
    exec(compile(example, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    score, path = lines[0].split()[:2]
    assert path == "hat/00d94e21-5891-492e-be0e-792e7338c077.jpg" and abs(float(score) - 1.0) < 1e-4
