"""A private PostgreSQL server and a private Redis a test may stop and start (the shared
ones must never be touched): a temporary directory and a free port each; PostgreSQL is
initdb'd and runs as ``postgres``. Used by the outage tests and by tests/faults."""
from __future__ import annotations

import contextlib
import glob
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """initdb'd once; ``start``/``stop`` as often as a test likes."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="kraken-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql+asyncpg://kraken:kraken@127.0.0.1:{self.port}/kraken"
        self._as_postgres = ["runuser", "-u", "postgres", "--"]
        pw = self.root / "pw"
        pw.write_text("kraken\n")
        shutil.chown(self.root, "postgres")
        shutil.chown(pw, "postgres")
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "kraken", f"--pwfile={pw}",
                  "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8")
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                    "max_connections = 50\n")
        self.start()
        self._run(_bin("createdb"), "-h", str(self.root), "-p", str(self.port), "-U",
                  "kraken", "kraken")

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_postgres, *argv], check=True, capture_output=True,
                       timeout=120)

    def start(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A redis-server without persistence; ``start``/``stop`` as often as a test likes."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="kraken-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed")
        with open(Path(self.dir) / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not self.ping():
            if time.monotonic() > deadline:
                raise RuntimeError("the private redis-server did not start")
            time.sleep(0.05)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        yield pg
    finally:
        pg.remove()
