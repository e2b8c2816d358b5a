"""The type stubs: they match the native module (stubtest), and a program using the API
type-checks under ``mypy --strict``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # From another directory, so that the installed package (with its native module) is
    # the one checked, not the source tree.
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_the_stubs_match_the_native_module(tmp_path: Path) -> None:
    out = run(tmp_path, "mypy.stubtest", "hostlimit._native")
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_example_program_passes_mypy_strict(tmp_path: Path) -> None:
    out = run(tmp_path, "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(ROOT / "examples" / "typed_example.py"))
    assert out.returncode == 0, out.stdout + out.stderr
