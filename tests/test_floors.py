"""tests/floors.txt, what `make floors` installs, pins every direct dependency at pyproject.toml's floor."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
# "name[extra]>=1.2; marker": the name and the floor (bundled-weights packages have a floor too)
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:>=\s*([0-9][^,;\s]*))?")


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_floors() -> dict[str, str | None]:
    """Every direct dependency of the app and of the extras `make test` installs, with its floor (None: no floor)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra, listed in project["optional-dependencies"].items():
        if extra != "bench":  # the benchmarks pin their reference versions exactly
            requirements += listed
    floors: dict[str, str | None] = {}
    for requirement in requirements:
        name, floor = _REQUIREMENT.match(requirement).groups()
        name = _normalised(name)
        if name == "vfs":  # vfs[unit,...]: the extras themselves, listed above
            continue
        if name not in floors or floor is None or (floors[name] is not None and _release(floor) > _release(floors[name])):
            floors[name] = floor  # in several lists (streamlit: the app's and the tests'), the highest floor holds
    return floors


def _release(version: str) -> tuple[int, ...]:
    """``"2.1"`` and ``"2.1.0"`` alike: the numbers, trailing zeros dropped."""
    numbers = [int(part) for part in version.split(".")]
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / "tests" / "floors.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_normalised(name)] = version
    return pins


def test_every_direct_dependency_is_pinned_at_its_floor():
    declared, pins = declared_floors(), pinned()
    assert set(pins) == set(declared), "tests/floors.txt and pyproject.toml name different packages"
    for name, floor in declared.items():
        assert floor is not None, f"{name} has no floor in pyproject.toml"
        assert _release(pins[name]) == _release(floor), f"{name}: pinned at {pins[name]}, floor {floor}"
