"""A limiter opened before fork() keeps working in the child, including with a journal: the
child uses no SQLite connection and no thread of the parent's, and its admissions reach the
journal."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hostlimit


def run_child(body) -> int:  # type: ignore[no-untyped-def]
    """Forks; the child runs ``body()`` and exits 0 if it returned True."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if body() else 3
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def journal_rows(journal: Path) -> int:
    """Admissions in a journal: a directory with one database per process, where the same
    admission may be copied by several processes (restore counts it once, and so does this)."""
    seen: set[tuple[object, ...]] = set()
    for database in sorted(journal.glob("*.sqlite")):
        with sqlite3.connect(database) as conn:
            seen.update(conn.execute("SELECT file_id, seq, boot_ns FROM admissions").fetchall())
    return len(seen)


@pytest.mark.parametrize("durability", ["periodic", "strict"])
def test_a_limiter_with_a_journal_keeps_working_in_a_forked_child(limiter_dir: Path, durability: str) -> None:
    path, journal = limiter_dir / "l", limiter_dir / "l.sqlite"
    limiter = hostlimit.Limiter.open(
        path, ["100/min"], journal=journal, durability=durability, journal_interval=0.2
    )
    assert limiter.try_acquire(3)
    limiter.journal_flush()

    expected = [3]

    def child() -> bool:
        assert limiter.try_acquire(5)
        limiter.acquire(2, timeout=1)
        limiter.journal_flush()  # a connection of its own
        assert limiter.journal_error is None
        assert limiter.usage()[0].used == expected[0] + 7
        # The child runs a journal thread of its own (the parent's does not exist here)...
        assert len(os.listdir("/proc/self/task")) == 2
        limiter.close()
        # ... which close stops.
        return len(os.listdir("/proc/self/task")) == 1

    for _ in range(3):
        assert run_child(child) == 0
        expected[0] += 7
    # The parent goes on, with its journal.
    assert limiter.try_acquire(1)
    limiter.journal_flush()
    assert limiter.journal_error is None
    assert limiter.usage()[0].used == 3 + 3 * 7 + 1
    limiter.close()
    # Everything the children admitted reached the journal: a file created again from it
    # (after the file is lost, as in a reboot; `remove` would take the journal away too)
    # starts with every admission.
    os.unlink(path)
    restored = hostlimit.Limiter.open(path, ["100/min"], journal=journal, durability=durability)
    assert restored.usage()[0].used == 25
    assert journal_rows(journal) >= 1


def test_multiprocessing_fork_pool_with_a_journaled_limiter(limiter_dir: Path) -> None:
    path, journal = limiter_dir / "l", limiter_dir / "l.sqlite"
    limiter = hostlimit.Limiter.open(path, ["1000/min"], journal=journal)
    assert limiter.try_acquire()
    global INHERITED
    INHERITED = limiter
    with multiprocessing.get_context("fork").Pool(2) as pool:
        admitted = pool.map(_admit_ten, range(4))
    assert admitted == [10] * 4
    assert limiter.usage()[0].used == 41
    limiter.journal_flush()
    limiter.close()
    os.unlink(path)  # the file lost, as in a reboot
    assert hostlimit.Limiter.open(path, ["1000/min"], journal=journal).usage()[0].used == 41


INHERITED = None


def _admit_ten(_: int) -> int:
    assert INHERITED is not None
    count = sum(1 for _ in range(10) if INHERITED.try_acquire())
    INHERITED.journal_flush()
    return count


def test_no_journal_thread_is_running_at_the_fork(limiter_dir: Path) -> None:
    # Python 3.12+ warns (DeprecationWarning) when forking a process with other threads
    # running; the journal's thread is stopped before the fork, so no warning.
    script = textwrap.dedent(
        """
        import os, sys, threading, warnings
        import hostlimit
        warnings.simplefilter("error")
        lim = hostlimit.Limiter.open(sys.argv[1], "10/s", journal=sys.argv[2])
        assert lim.try_acquire()
        n = len(os.listdir("/proc/self/task"))
        pid = os.fork()
        if pid == 0:
            os._exit(0 if lim.try_acquire() else 1)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        print(n, len(os.listdir("/proc/self/task")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(limiter_dir / "l"), str(limiter_dir / "j.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert before == 2, "the journal thread runs before the fork"
    assert after == 1, "no journal thread is started again until the limiter is used"


def test_a_limiter_without_journal_in_a_forked_child(limiter_dir: Path) -> None:
    limiter = hostlimit.Limiter.open(limiter_dir / "l", "3/min")
    assert limiter.try_acquire()

    def child() -> bool:
        return bool(limiter.try_acquire()) and bool(limiter.try_acquire()) and not limiter.try_acquire()

    assert run_child(child) == 0
    assert not limiter.try_acquire(), "the child's admissions count in the parent"
