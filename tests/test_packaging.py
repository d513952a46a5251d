"""The version bounds in pyproject.toml are versions the code runs on: every lower bound is the
release the suite runs on (constraints.txt pins it for make and CI), so no older, untested
release satisfies them."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

from conftest import REPO
from packaging.requirements import Requirement
from packaging.version import Version


def requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in [*project["dependencies"], *extras] if "fmnist-tl" not in r]


def pins() -> dict[str, Version]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    pairs = (line.split("==") for line in lines if "==" in line)
    return {name.lower().replace("_", "-"): Version(v) for name, v in pairs}


def test_every_lower_bound_is_the_tested_release():
    pinned = pins()
    for req in requirements():
        name = req.name.lower().replace("_", "-")
        lower = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert lower, f"{req}: no lower bound"
        tested = pinned[name]
        assert tested in req.specifier, f"{req} excludes the tested {tested}"
        assert Version(version(req.name)) == tested, f"{req.name}: installed is not the pin"
        release = tested.release[: len(lower[0].release)]
        assert lower[0].release == release, f"{req}: lower bound below the tested {tested}"
