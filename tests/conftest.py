"""Shared fixtures: one `tiny` bundle exported per test session (the embedded default)."""

from pathlib import Path

import pytest

from janusweb.cli import main


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A fresh `janusweb export tiny` bundle; tests must not modify it (copy it first)."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    assert main(["--quiet", "export", "tiny", "--out", str(out)]) == 0
    return out
