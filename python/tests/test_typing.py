"""The type stubs: they match the native module (stubtest), and a program using the API
type-checks under ``mypy --strict``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_stubs_match_the_native_module() -> None:
    out = run("mypy.stubtest", "hostlimit._native")
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_example_program_passes_mypy_strict() -> None:
    out = run("mypy", "--strict", "examples/typed_example.py", "hostlimit")
    assert out.returncode == 0, out.stdout + out.stderr
