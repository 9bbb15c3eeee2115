"""A whole throwaway cluster for end-to-end tests: a manager and N agent processes.

It uses the halfstack PostgreSQL and Redis (scripts/dev halfstack) but a database
of its own, free ports, and for each agent its own id, config and scratch directory;
it removes every container it made when it stops. With ``agents=1`` (the default) the
agent is named ``agent`` with id ``agent_id``; more agents are ``agent1``, ``agent2``
… with ids ``<agent_id>-1``, ``<agent_id>-2`` … (``agent_ids``: name → id).
"""
from __future__ import annotations

import concurrent.futures
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg

from tests.scratch_mounts import unmount_scratch

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, workdir: Path, pg_url: str, redis_url: str, agents: int = 1) -> None:
        self.workdir = workdir
        self.pg_url = pg_url
        self.redis_url = redis_url
        self.db_name = f"kraken_e2e_{secrets.token_hex(4)}"
        self.agent_id = f"e2e-{secrets.token_hex(3)}"
        self.agent_ids = {"agent": self.agent_id} | {
            f"agent{i}": f"{self.agent_id}-{i}" for i in range(1, agents)}
        self.api_port = free_port()
        self.link_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.api_port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.access_key = ""
        self.secret_key = ""

    # ---- setup -------------------------------------------------------------------
    @property
    def db_url(self) -> str:
        base = self.pg_url.rsplit("/", 1)[0]
        return f"{base}/{self.db_name}".replace("postgresql://", "postgresql+asyncpg://")

    # settings a subclass may tune (the fault suite shortens timeouts)
    link_settings = "heartbeat_interval = 1.0\nheartbeat_timeout = 5.0"
    manager_sections = ""
    agent_sections = ""

    def _write_keys(self) -> Path:
        keys = self.workdir / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        self.manager_cli("gen-link-keys", str(keys))
        self.manager_cli("gen-secrets-key", str(keys / "secretbox.key"))
        (keys / "join_token").write_text(secrets.token_urlsafe(24))
        (keys / "join_token").chmod(0o600)
        return keys

    def manager_toml(self, api_port: int, link_port: int) -> str:
        keys = self.workdir / "keys"
        return f"""
[api]
host = "127.0.0.1"
port = {api_port}
[db]
url = "{self.db_url}"
[redis]
url = "{self.redis_url}"
[secrets]
key_file = "{keys}/secretbox.key"
[link]
bind = "tcp://127.0.0.1:{link_port}"
secret_key_file = "{keys}/manager.key_secret"
public_key_file = "{keys}/manager.key"
join_token_file = "{keys}/join_token"
{self.link_settings}
[vfolders]
root = "{self.workdir}/vfolders"
[logging]
level = "INFO"
{self.manager_sections}"""

    def agent_toml(self, agent_id: str, link_ports: list[int], scratch: Path) -> str:
        keys = self.workdir / "keys"
        endpoints = ", ".join(f'"tcp://127.0.0.1:{p}"' for p in link_ports)
        return f"""
agent_id = "{agent_id}"
region = "e2e"
scratch_root = "{scratch}"
[manager]
endpoints = [{endpoints}]
public_key_file = "{keys}/manager.key"
join_token_file = "{keys}/join_token"
[logging]
level = "INFO"
{self.agent_sections}"""

    def _write_configs(self) -> None:
        self._write_keys()
        (self.workdir / "manager.toml").write_text(self.manager_toml(self.api_port,
                                                                      self.link_port))
        for name, agent_id in self.agent_ids.items():
            (self.workdir / f"{name}.toml").write_text(self.agent_toml(
                agent_id, [self.link_port], self.workdir / self._scratch(name)))

    @staticmethod
    def _scratch(name: str) -> str:
        return "scratch" if name == "agent" else f"scratch-{name}"

    async def _create_db(self) -> None:
        conn = await asyncpg.connect(self.pg_url)
        try:
            await conn.execute(f'CREATE DATABASE "{self.db_name}"')
        finally:
            await conn.close()

    async def _drop_db(self) -> None:
        conn = await asyncpg.connect(self.pg_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        finally:
            await conn.close()

    def manager_cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "manager", *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"manager {args[0]} failed: {out.stderr.strip()}")
        return out.stdout

    def create_admin_keypair(self, config: Path) -> None:
        out = self.manager_cli("keypair", "create", "-c", str(config), "--admin",
                               "--user-id", "e2e", "--shell")
        env = dict(line.removeprefix("export ").split("=", 1)
                   for line in out.splitlines() if line.startswith("export "))
        self.access_key = env["BACKEND_ACCESS_KEY"].strip("'\"")
        self.secret_key = env["BACKEND_SECRET_KEY"].strip("'\"")

    async def start(self) -> None:
        await self._create_db()
        self._write_configs()
        cfg = self.workdir / "manager.toml"
        self.manager_cli("init-db", "-c", str(cfg))
        self.create_admin_keypair(cfg)
        self.start_process("manager", "serve", "-c", str(cfg))
        self.wait(lambda: self.api_up(self.endpoint), 30, "manager API")
        for name, agent_id in self.agent_ids.items():
            self.start_agent(name, agent_id)

    def start_agent(self, name: str = "agent", agent_id: str = "") -> None:
        """Start an agent (config ``<name>.toml``) and wait for a fresh join."""
        log = self.workdir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        self.start_process(name, "-c", str(self.workdir / f"{name}.toml"), module="agent")

        def joined() -> bool:  # a fresh join, not the status a previous agent left
            with open(log, "rb") as f:
                f.seek(offset)
                return (b"joined manager" in f.read()
                        and self.agent_alive(agent_id or self.agent_id))
        self.wait(joined, 60, f"{name} join")

    def start_process(self, name: str, *args: str, module: str = "") -> None:
        """Run ``python -m <module or name> ARGS`` with its output in ``<name>.log``."""
        with open(self.workdir / f"{name}.log", "ab") as log:  # the child keeps its own fd
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", module or name, *args], cwd=ROOT,
                stdout=log, stderr=subprocess.STDOUT, env=self.process_env())

    def process_env(self) -> dict[str, str]:
        return dict(os.environ)

    def stop_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @staticmethod
    def api_up(endpoint: str) -> bool:
        with urllib.request.urlopen(endpoint + "/", timeout=2) as r:
            return r.status == 200

    def agent_alive(self, agent_id: str) -> bool:
        return bool(self.sql("SELECT count(*) FROM agents WHERE id = $1 AND status = 'ALIVE'",
                             agent_id))

    def sql(self, query: str, *args: object) -> object:
        """The first value of the first row of ``query``."""
        return self._on_db(lambda conn: conn.fetchval(query, *args))

    def sql_rows(self, query: str, *args: object) -> list[asyncpg.Record]:
        return self._on_db(lambda conn: conn.fetch(query, *args))  # type: ignore[return-value]

    def _on_db(self, do) -> object:  # type: ignore[no-untyped-def]
        import asyncio

        async def run() -> object:
            conn = await asyncpg.connect(self.pg_url.rsplit("/", 1)[0] + "/" + self.db_name,
                                         timeout=5)
            try:
                return await do(conn)
            finally:
                await conn.close()
        # callers may sit inside a running event loop (async fixtures): use a thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result()

    def wait(self, probe, limit: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + limit
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = (self.workdir / f"{name}.log").read_text()[-3000:]
                    raise RuntimeError(f"{name} exited while waiting for {what}:\n{log}")
            try:
                if probe():
                    return
            except (OSError, asyncpg.PostgresError) as e:  # not up yet
                last_error = e
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what} (last error: {last_error!r})")

    def containers(self, agent_id: str | None = None) -> list[str]:
        """The containers of the cluster's agents (or of the one ``agent_id``)."""
        found = []
        for each in [agent_id] if agent_id else list(self.agent_ids.values()):
            out = subprocess.run(["docker", "ps", "-aq", "--filter",
                                  f"label=ai.backend.agent-id={each}"],
                                 capture_output=True, text=True, check=True)
            found += out.stdout.split()
        return found

    async def stop(self) -> None:
        for name in self.agent_ids:
            self.stop_process(name)
        self.stop_process("manager")
        left = self.containers()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
        await self._drop_db()
        for name in self.agent_ids:  # a stopped agent leaves its sessions' scratch mounted
            unmount_scratch(self.workdir / self._scratch(name))
            shutil.rmtree(self.workdir / self._scratch(name), ignore_errors=True)

    # ---- the official client ----------------------------------------------------
    def client_env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
        env.update(BACKEND_ENDPOINT=self.endpoint, BACKEND_ACCESS_KEY=self.access_key,
                   BACKEND_SECRET_KEY=self.secret_key, PYTHONWARNINGS="ignore")
        env.update(overrides)
        return env
