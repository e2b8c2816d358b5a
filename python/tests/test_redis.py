"""``Limiter.connect``: the core's Redis backend through the same Rust code, on a
``redis-server`` this test starts on a free loopback port (skipped without one, except under
``CI=true``, where a missing server fails)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import hostlimit


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    program = shutil.which("redis-server")
    if program is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is missing, and CI must run the Redis tests")
        pytest.skip("no redis-server on this machine")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(7) == b"+PONG\r\n":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait()


def test_connect_admits_denies_and_adopts_the_stored_rates(redis_url: str) -> None:
    limiter = hostlimit.Limiter.connect(redis_url, "py", ["2/min"])
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    denied = limiter.try_acquire()
    assert not denied
    assert denied.retry_after is not None and 50 < denied.retry_after <= 60
    assert denied.kind == "exhausted"
    assert limiter.admitted() == 2
    adopted = hostlimit.Limiter.connect(redis_url, "py")
    assert [str(r) for r in adopted.rates] == ["2/min"]
    assert not adopted.try_acquire()
    with pytest.raises(hostlimit.HostlimitError, match=r"\[2/min\].*\[5/min\]"):
        hostlimit.Limiter.connect(redis_url, "py", ["5/min"])
    limiter.reset()
    assert adopted.try_acquire()


def test_an_unreachable_server_follows_the_outage_policy(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    deny = hostlimit.Limiter.connect(redis_url, "outage", ["5/min"], timeout=0.2)
    allow = hostlimit.Limiter.connect(redis_url, "outage", ["5/min"], on_outage="allow")
    subprocess.run(["redis-cli", "-p", str(port), "SHUTDOWN", "NOSAVE"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    denied = deny.try_acquire()
    assert not denied and denied.kind == "unreachable"
    assert allow.try_acquire()
    with pytest.raises(ValueError):
        hostlimit.Limiter.connect(redis_url, "x", ["5/min"], on_outage="maybe")
