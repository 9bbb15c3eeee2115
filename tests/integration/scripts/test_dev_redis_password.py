"""scripts/dev's Redis requires a password: a private redis-server started by the
project's own shell functions (temp dir, free port — never the shared 16379)."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevRedis:
    """Runs a function of scripts/lib with VAR and REDIS_PORT pointing at a temp dir."""

    def __init__(self, var: Path, port: int) -> None:
        self.var, self.port = var, port

    def sh(self, body: str) -> subprocess.CompletedProcess[str]:
        script = (f'set -euo pipefail; ROOT="{ROOT}"; source "$ROOT/scripts/lib/common.sh"; '
                  f'VAR="{self.var}"; REDIS_PORT={self.port}; '
                  f'source "$ROOT/scripts/lib/halfstack.sh"; {body}')
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                              timeout=60)

    @property
    def password(self) -> str:
        return (self.var / "keys" / "redis.pass").read_text().strip()

    def ping(self, password: str | None = None, port: int | None = None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        if password is not None:
            env["REDISCLI_AUTH"] = password
        out = subprocess.run(["redis-cli", "--no-auth-warning", "-p",
                              str(port or self.port), "ping"],
                             capture_output=True, text=True, env=env, timeout=10)
        return (out.stdout + out.stderr).strip()


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevRedis]:
    d = DevRedis(tmp_path / "var", _free_port())
    try:
        yield d
    finally:
        d.sh("redis_down")


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_redis_started_by_the_scripts_refuses_unauthenticated_clients(dev: DevRedis) -> None:
    out = dev.sh("redis_up")
    assert out.returncode == 0, out.stderr
    assert "NOAUTH" in dev.ping()  # an unauthenticated client gets nothing
    assert "WRONGPASS" in dev.ping("guess") or "invalid" in dev.ping("guess")
    assert dev.ping(dev.password) == "PONG"
    for secret_file in (dev.var / "keys" / "redis.pass", dev.var / "redis" / "redis.conf"):
        assert (secret_file.stat().st_mode & 0o777) == 0o600, secret_file
    pid = int((dev.var / "run" / "redis.pid").read_text())
    assert dev.password not in _cmdline(pid)  # not visible in ps
    again = dev.sh("redis_up; echo URL=$REDIS_URL")  # idempotent; the URL carries it
    assert again.returncode == 0 and "already answers" in again.stdout
    assert f"URL=redis://:{dev.password}@127.0.0.1:{dev.port}/0" in again.stdout
    assert int((dev.var / "run" / "redis.pid").read_text()) == pid


def _wait_pong(dev: DevRedis) -> None:
    deadline = time.monotonic() + 20
    while dev.ping() != "PONG":
        assert time.monotonic() < deadline, "redis did not start"
        time.sleep(0.1)


def test_an_older_passwordless_redis_of_this_checkout_is_restarted(dev: DevRedis) -> None:
    for sub in ("run", "logs", "redis"):
        (dev.var / sub).mkdir(parents=True, exist_ok=True)
    # what the previous scripts/dev started: no password, our pid file
    subprocess.run(["redis-server", "--bind", "127.0.0.1", "--port", str(dev.port),
                    "--dir", str(dev.var / "redis"), "--daemonize", "yes",
                    "--pidfile", str(dev.var / "run" / "redis.pid"),
                    "--logfile", str(dev.var / "logs" / "redis.log")], check=True)
    _wait_pong(dev)
    out = dev.sh("redis_up")
    assert out.returncode == 0, out.stderr
    assert "ran without a password" in out.stdout
    assert "NOAUTH" in dev.ping() and dev.ping(dev.password) == "PONG"


def test_a_foreign_passwordless_redis_is_reported_not_touched(dev: DevRedis,
                                                              tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(dev.port),
                             "--dir", str(other), "--save", ""],
                            stdout=subprocess.DEVNULL)
    try:
        _wait_pong(dev)
        out = dev.sh("redis_up")
        assert out.returncode != 0
        assert "WITHOUT a password" in out.stderr and "not started by" in out.stderr
        assert dev.ping() == "PONG" and proc.poll() is None  # left as it was
    finally:
        proc.terminate()
        proc.wait(10)
