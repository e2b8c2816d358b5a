"""Shared fixtures: every test gets its own limiter directory (never /dev/shm/hostlimit)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def limiter_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh directory, also as ``$HOSTLIMIT_DIR`` so that named limiters land in it; the
    records of journaled limiters go to a fresh state directory (``$HOSTLIMIT_STATE_DIR``)
    rather than the host's."""
    directory = tmp_path / "limiters"
    directory.mkdir()
    monkeypatch.setenv("HOSTLIMIT_DIR", str(directory))
    monkeypatch.setenv("HOSTLIMIT_STATE_DIR", str(tmp_path / "state"))
    yield directory
