"""The package's own promises: one version number, metadata that matches.

These read the checkout (Cargo.toml, pyproject.toml) beside the installed
package; scripts/wheels.sh checks the built wheels themselves.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import ferroloop

ROOT = Path(__file__).resolve().parent.parent


def _toml(name: str) -> dict:
    with open(ROOT / name, "rb") as f:
        return tomllib.load(f)


def test_one_version_number() -> None:
    cargo = _toml("Cargo.toml")["package"]["version"]
    project = _toml("pyproject.toml")["project"]
    # pyproject declares no number of its own: maturin takes Cargo.toml's.
    assert "version" not in project and "version" in project["dynamic"]
    assert ferroloop.__version__ == cargo
    assert importlib.metadata.version("ferroloop") == cargo


def test_license_metadata_matches_the_crate_and_the_files() -> None:
    cargo = _toml("Cargo.toml")["package"]
    project = _toml("pyproject.toml")["project"]
    assert project["license"] == cargo["license"] == "MIT OR Apache-2.0"
    for name in project["license-files"]:
        assert (ROOT / name).is_file(), name
    assert sorted(project["license-files"]) == ["LICENSE-APACHE", "LICENSE-MIT"]
    assert "Apache License" in (ROOT / "LICENSE-APACHE").read_text()
    assert "Permission is hereby granted" in (ROOT / "LICENSE-MIT").read_text()


def test_classifiers_match_requires_python() -> None:
    project = _toml("pyproject.toml")["project"]
    lo, hi = project["requires-python"].split(",")
    assert lo == ">=3.11" and hi.startswith("<3.")
    minors = range(11, int(hi.removeprefix("<3.")))
    listed = {c for c in project["classifiers"] if c.startswith("Programming Language :: Python :: 3.")}
    assert listed == {f"Programming Language :: Python :: 3.{m}" for m in minors}
    assert "Operating System :: POSIX :: Linux" in project["classifiers"]
    assert "Typing :: Typed" in project["classifiers"]
