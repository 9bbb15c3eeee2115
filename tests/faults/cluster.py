"""The fault suite's cluster: two managers, two agents, a private PostgreSQL and Redis.

Both managers share the database and Redis; both agents dial both managers. Every
process, container, database and directory it made is removed by ``stop()``, even
after a failure. The fault injectors are methods named for what they do.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.cluster import Cluster, free_port
from tests.faults.services import pids_in_container
from tests.integration.manager.privatepg import PrivatePostgres, PrivateRedis

MANAGERS = ("manager0", "manager1")
AGENTS = ("agent0", "agent1")
# timeouts the suite's deadlines derive from (short so faults resolve within a test)
HEARTBEAT_INTERVAL = 0.5
HEARTBEAT_TIMEOUT = 3.0
CREATE_TIMEOUT = 20.0
REQUEST_TIMEOUT = 10.0
SETTLE = 3.0
# per-state deadlines of the manager's sweep (docs/reconciliation.md)
DEADLINES = {"PENDING": 10.0, "SCHEDULED": 10.0, "PREPARING": CREATE_TIMEOUT + SETTLE,
             "RESTARTING": CREATE_TIMEOUT + SETTLE, "TERMINATING": REQUEST_TIMEOUT + SETTLE}
SWEEP_INTERVAL = 2.0
RUNNER_UNRESPONSIVE = 8.0  # seconds of silence before the agent declares a runner hung


class FaultCluster(Cluster):
    link_settings = (f"heartbeat_interval = {HEARTBEAT_INTERVAL}\n"
                     f"heartbeat_timeout = {HEARTBEAT_TIMEOUT}\n"
                     f"create_timeout = {CREATE_TIMEOUT}\n"
                     f"request_timeout = {REQUEST_TIMEOUT}")
    manager_sections = ('[sessions]\ndefault_cpu = 0.25\ndefault_mem = "256m"\n'
                        "[exec]\ntimeout = 120\n"
                        f"[reconcile]\nsettle = {SETTLE}\nsweep_interval = {SWEEP_INTERVAL}\n"
                        f"pending_deadline = {DEADLINES['PENDING']}\n"
                        f"preparing_deadline = {DEADLINES['PREPARING']}\n"
                        f"restarting_deadline = {DEADLINES['RESTARTING']}\n"
                        f"terminating_deadline = {DEADLINES['TERMINATING']}\n")
    agent_sections = (f"[runner]\nping_interval = 1.0\n"
                      f"unresponsive_timeout = {RUNNER_UNRESPONSIVE}\n")

    def __init__(self, workdir: Path) -> None:
        self.pg = PrivatePostgres()  # initdb'd and started
        self.redis = PrivateRedis()
        super().__init__(workdir, self.pg.url.replace("+asyncpg", ""), self.redis.url)
        tag = secrets.token_hex(3)
        self.agent_ids = {name: f"flt-{tag}-{name}" for name in AGENTS}
        self.agent_id = self.agent_ids[AGENTS[0]]
        self.api_ports = {name: free_port() for name in MANAGERS}
        self.link_ports = {name: free_port() for name in MANAGERS}
        self.endpoints = [f"http://127.0.0.1:{self.api_ports[m]}" for m in MANAGERS]
        self.endpoint = self.endpoints[0]
        self.stopped: set[str] = set()  # processes held by SIGSTOP

    # ---- start and stop ------------------------------------------------------------
    def _write_configs(self) -> None:
        self._write_keys()
        for m in MANAGERS:
            (self.workdir / f"{m}.toml").write_text(
                self.manager_toml(self.api_ports[m], self.link_ports[m]))
        ports = [self.link_ports[m] for m in MANAGERS]
        for a in AGENTS:
            (self.workdir / f"{a}.toml").write_text(
                self.agent_toml(self.agent_ids[a], ports, self.workdir / f"scratch-{a}"))

    async def start(self) -> None:
        self.redis.start()
        await self._create_db()
        self._write_configs()
        self.manager_cli("init-db", "-c", str(self.workdir / f"{MANAGERS[0]}.toml"))
        self.create_admin_keypair(self.workdir / f"{MANAGERS[0]}.toml")
        self.sql("UPDATE keypairs SET concurrency_limit = 40")
        for m in MANAGERS:
            self.start_manager(m)
        for a in AGENTS:
            self.start_agent(a, self.agent_ids[a])

    def start_manager(self, name: str) -> None:
        self.start_process(name, "serve", "-c", str(self.workdir / f"{name}.toml"),
                           module="manager")
        endpoint = f"http://127.0.0.1:{self.api_ports[name]}"
        self.wait(lambda: self.api_up(endpoint), 30, f"{name} API")

    async def stop(self) -> None:
        try:
            for name in list(self.procs):
                self.resume(name)
                self.stop_process(name, signal.SIGKILL)
            left = self.containers()
            if left:
                subprocess.run(["docker", "rm", "-f", *left], capture_output=True, timeout=120)
        finally:
            self.redis.remove()
            self.pg.remove()
            for a in AGENTS:
                shutil.rmtree(self.workdir / f"scratch-{a}", ignore_errors=True)

    def containers(self) -> list[str]:
        return list(self.kernel_containers())

    def kernel_containers(self) -> dict[str, str]:
        """Container id → kernel id of every kernel container of the suite's agents."""
        found: dict[str, str] = {}
        for agent_id in self.agent_ids.values():
            out = subprocess.run(
                ["docker", "ps", "-a", "--filter", "label=kraken.managed=1", "--filter",
                 f"label=ai.backend.agent-id={agent_id}", "--format",
                 '{{.ID}} {{.Label "ai.backend.kernel-id"}}'],
                capture_output=True, text=True, check=True, timeout=30)
            for line in out.stdout.splitlines():
                cid, _, kid = line.partition(" ")
                found[cid] = kid
        return found

    # ---- fault injectors -----------------------------------------------------------
    def kill(self, name: str) -> None:
        """SIGKILL a manager or an agent (it stays down until restarted)."""
        self.resume(name)
        self.stop_process(name, signal.SIGKILL)

    def restart(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.resume(name)
        self.stop_process(name, sig)
        self.start_again(name)

    def start_again(self, name: str) -> None:
        if name in self.procs:
            return
        if name in MANAGERS:
            self.start_manager(name)
        else:
            self.start_agent(name, self.agent_ids[name])

    def pause(self, name: str) -> None:
        """SIGSTOP a manager or an agent: a hang, the link goes quiet."""
        self.procs[name].send_signal(signal.SIGSTOP)
        self.stopped.add(name)

    def resume(self, name: str) -> None:
        if name in self.stopped and name in self.procs:
            self.procs[name].send_signal(signal.SIGCONT)
        self.stopped.discard(name)

    def pause_runner(self, kernel_id: str) -> list[int]:
        """SIGSTOP the runner process inside a kernel's container; returns its host pids."""
        cid = next(c for c, k in self.kernel_containers().items() if k == kernel_id)
        pids = [pid for pid, args in pids_in_container(cid) if "kernels.runner" in args]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def resume_pids(pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def heal(self) -> None:
        """Undo every fault: services up, processes resumed and running."""
        if not self.pg.running:
            self.pg.start()
        if not self.redis.running:
            self.redis.start()
        for name in list(self.stopped):
            self.resume(name)
        for name in (*MANAGERS, *AGENTS):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                self.procs.pop(name)
            self.start_again(name)

    def log_tail(self, name: str, limit: int = 4000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-limit:] if path.exists() else ""

    def wait_until(self, probe, limit: float, what: str) -> float:  # type: ignore[no-untyped-def]
        """Poll ``probe`` until true; returns the seconds it took (raises past ``limit``)."""
        t0 = time.monotonic()
        while not probe():
            if time.monotonic() - t0 > limit:
                raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")
            time.sleep(0.25)
        return time.monotonic() - t0

    # ---- what the database says ----------------------------------------------------
    def session_row(self, token: str) -> dict[str, object] | None:
        """The newest session row named ``token``: id, status, status_info, agent."""
        rows = self.sql_rows("SELECT id::text AS id, status, status_info, agent_id "
                             "FROM kernels WHERE session_name = $1 "
                             "ORDER BY created_at DESC LIMIT 1", token)
        return dict(rows[0]) if rows else None

    def agent_name(self, agent_id: object) -> str:
        return next(n for n, a in self.agent_ids.items() if a == agent_id)

    def agent_status(self, name: str) -> str:
        return str(self.sql("SELECT status FROM agents WHERE id = $1", self.agent_ids[name]))

    def wait_session_status(self, token: str, statuses: tuple[str, ...],
                            limit: float = 20) -> str | None:
        """Poll until session ``token`` is in one of ``statuses``; its status, or None."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            row = self.session_row(token)
            if row is not None and row["status"] in statuses:
                return str(row["status"])
            time.sleep(0.05)
        return None
