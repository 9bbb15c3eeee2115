"""Fixtures for manager integration tests: a fresh PostgreSQL database per test
session (migrated with Alembic), real Redis, the real aiohttp app, and a fake agent
speaking the real agent protocol over a CurveZMQ DealerLink."""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import hashlib
import hmac
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from common.codec import Message
from common.link import DealerLink
from common.msg_agent import (
    AGENT_PROTOCOL,
    Ack,
    CompleteCode,
    CompletionResult,
    CreateKernel,
    DestroyKernel,
    ErrorReply,
    Execute,
    ExecuteResult,
    GetKernelStats,
    Heartbeat,
    InterruptKernel,
    Join,
    JoinAccepted,
    KernelCreated,
    KernelDestroyed,
    KernelStats,
    RestartKernel,
    StreamClose,
    StreamControl,
    StreamCredit,
    StreamData,
    StreamEvent,
    StreamResize,
    StreamStart,
    StreamStarted,
)
from common.streams import WINDOW_BYTES, cost
from manager import linkkeys, secretbox
from manager.api.app import build_app
from manager.api.keys import DB, KEYPAIRS, REGISTRY
from manager.config import ManagerConfig
from manager.db.engine import make_engine
from manager.db.migrate import upgrade_head
from manager.services.keypairs import create_keypair

PG_URL = os.environ.get("KRAKEN_TEST_PG_URL", "postgresql://kraken:kraken@127.0.0.1:15432/kraken")
REDIS_URL = os.environ.get("KRAKEN_TEST_REDIS_URL", "redis://127.0.0.1:16379/0")
IMAGE = "kraken/python:latest"
STATS = {"cpu_used": 1234, "mem_max_bytes": 1, "mem_cur_bytes": 1, "net_rx_bytes": 0,
         "net_tx_bytes": 0, "io_read_bytes": 0, "io_write_bytes": 0, "io_max_scratch": 0}


async def _create_db(name: str) -> str:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = PG_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{url}/{name}"
    engine = make_engine(url)
    try:
        await upgrade_head(engine)
        await upgrade_head(engine)  # idempotent
    finally:
        await engine.dispose()
    return url


async def _drop_db(name: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def mgr_db_url() -> Iterator[str]:
    name = f"kraken_test_{secrets.token_hex(4)}"
    url = asyncio.run(_create_db(name))
    yield url
    asyncio.run(_drop_db(name))


class FakeStream:
    """The fake agent's end of one stream: what the manager sent, and sends back that
    respect the manager's credit (common.streams), as the real agent's do."""

    def __init__(self, agent: FakeAgent, start: StreamStart) -> None:
        self.agent, self.start = agent, start
        self.stream_id = start.stream_id
        self.received: asyncio.Queue[Message] = asyncio.Queue()  # data/control/resize/close
        self.credit = WINDOW_BYTES
        self.credit_changed = asyncio.Event()
        self.sent_bytes = 0  # cost of everything sent so far
        self.blocked = asyncio.Event()  # set while a send waits for credit
        self.closed: str | None = None

    async def _spend(self, amount: int) -> None:
        while self.credit < amount:
            self.credit_changed.clear()
            self.blocked.set()
            await self.credit_changed.wait()
        self.blocked.clear()
        self.credit -= amount
        self.sent_bytes += amount

    async def send_data(self, data: bytes) -> None:
        await self._spend(cost(data))
        await self.agent.link.send(StreamData(stream_id=self.stream_id, data=data))

    async def send_event(self, seq: int, body: dict[str, Any]) -> None:
        await self._spend(cost(body))
        await self.agent.link.send(StreamEvent(stream_id=self.stream_id, seq=seq, body=body))

    async def close(self, reason: str = "") -> None:
        await self.agent.link.send(StreamClose(stream_id=self.stream_id, reason=reason))

    async def next(self, timeout: float = 10.0) -> Message:
        return await asyncio.wait_for(self.received.get(), timeout)

    def _take(self, msg: Message) -> None:
        if isinstance(msg, StreamCredit):
            self.credit += msg.amount
            self.credit_changed.set()
            return
        if isinstance(msg, StreamClose):
            self.closed = msg.reason
        self.received.put_nowait(msg)
        if isinstance(msg, StreamData) and self.agent.auto_credit:
            self.agent.spawn(self.agent.link.send(
                StreamCredit(stream_id=self.stream_id, amount=len(msg.data))))


class FakeAgent:
    """An agent that answers like a real one, without containers."""

    def __init__(self, endpoint: str, server_key: bytes, token: str, agent_id: str,
                 images: list[str] | None = None, cpu: str = "4", mem: str = str(8 * 2**30),
                 group: str = "default", instance_id: str = "") -> None:
        self.agent_id, self.token, self.group = agent_id, token, group
        self.instance_id = instance_id
        self.images = [{"name": n, "id": "sha256:" + n, "labels": {}}
                       for n in (images or [IMAGE])]
        self.slots = {"cpu": cpu, "mem": mem}
        self.kernels: set[str] = set()
        self.creating: dict[str, asyncio.Event] = {}  # kernel id → set when cancelled
        self.hold_create: asyncio.Event | None = None  # creates wait for it when set
        self.hold_execute: asyncio.Event | None = None  # executes wait for it when set
        self.hold_destroy: asyncio.Event | None = None  # destroys wait for it when set
        self.occupied: dict[str, str] = {}
        self.fail_create: str | None = None
        self.created: list[CreateKernel] = []
        self.destroyed: list[str] = []
        self.rejoins = 0
        self.streams: dict[str, FakeStream] = {}
        self.stream_started = asyncio.Queue[FakeStream]()
        self.refuse_stream: ErrorReply | None = None  # the answer to stream-start when set
        self.auto_credit = True  # credit the manager's stream-data as soon as it arrives
        self._tasks: set[asyncio.Task[None]] = set()
        self.link = DealerLink(AGENT_PROTOCOL, endpoint, self.handle, server_public_key=server_key)
        self._beat: asyncio.Task[None] | None = None

    async def start(self, token: str | None = None, heartbeat: float | None = 0.2) -> Message:
        self.link.start()
        reply = await self.join(token)
        if heartbeat and isinstance(reply, JoinAccepted):
            self._beat = asyncio.ensure_future(self._beat_loop(heartbeat))
        return reply

    async def join(self, token: str | None = None) -> Message:
        return await self.link.request(Join(
            agent_id=self.agent_id, token=token or self.token, region="test", version="0",
            available_slots=self.slots, images=self.images, kernels=sorted(self.kernels),
            creating=sorted(self.creating), group=self.group,
            instance_id=self.instance_id), 10)

    def stop_heartbeats(self) -> None:
        if self._beat is not None:
            self._beat.cancel()

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(agent_id=self.agent_id, available_slots=self.slots,
                         occupied_slots=self.occupied, kernels=sorted(self.kernels),
                         creating=sorted(self.creating))

    async def _beat_loop(self, period: float) -> None:
        while True:
            await self.link.send(self.heartbeat())
            await asyncio.sleep(period)

    async def _create(self, msg: CreateKernel) -> Message:
        """Like the real agent: a held create is listed as creating, and a destroy
        while it is held cancels it."""
        self.created.append(msg)
        if self.hold_create is not None:
            cancelled = self.creating[msg.kernel_id] = asyncio.Event()
            hold = asyncio.ensure_future(self.hold_create.wait())
            cancel = asyncio.ensure_future(cancelled.wait())
            await asyncio.wait([hold, cancel], return_when=asyncio.FIRST_COMPLETED)
            hold.cancel()
            cancel.cancel()
            del self.creating[msg.kernel_id]
            if cancelled.is_set():
                return ErrorReply(error_type="kernel-creation-cancelled", detail=msg.kernel_id)
        if self.fail_create:
            return ErrorReply(error_type="kernel-creation-failed", detail=self.fail_create)
        self.kernels.add(msg.kernel_id)
        return KernelCreated(kernel_id=msg.kernel_id, container_id="c-" + msg.kernel_id,
                             slots=msg.slots, features=["query"])

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def next_stream(self, timeout: float = 10.0) -> FakeStream:
        return await asyncio.wait_for(self.stream_started.get(), timeout)

    def _stream_start(self, msg: StreamStart) -> Message:
        if self.refuse_stream is not None:
            return self.refuse_stream
        stream = self.streams[msg.stream_id] = FakeStream(self, msg)
        self.stream_started.put_nowait(stream)
        info = {"run_id": msg.params.get("run_id")} if msg.kind == "execute" else {}
        return StreamStarted(stream_id=msg.stream_id, info=info)

    async def handle(self, msg: Message) -> Message | None:
        match msg:
            case StreamStart():
                return self._stream_start(msg)
            case StreamData() | StreamControl() | StreamResize() | StreamCredit() | \
                    StreamClose():
                stream = self.streams.get(msg.stream_id)
                if stream is not None:
                    stream._take(msg)
                return None
            case CreateKernel():
                return await self._create(msg)
            case Execute():
                if self.hold_execute is not None:
                    await self.hold_execute.wait()
                if msg.kernel_id not in self.kernels:
                    return ErrorReply(error_type="kernel-not-found", detail=msg.kernel_id)
                return ExecuteResult(run_id=msg.run_id, status="finished",
                                     console=[["stdout", f"ran {msg.code}\n"]], exit_code=0)
            case DestroyKernel():
                if self.hold_destroy is not None:
                    await self.hold_destroy.wait()
                self.destroyed.append(msg.kernel_id)
                if msg.kernel_id in self.creating:
                    self.creating[msg.kernel_id].set()
                    return KernelDestroyed(kernel_id=msg.kernel_id, stats={})
                if msg.kernel_id not in self.kernels:
                    return ErrorReply(error_type="kernel-not-found", detail=msg.kernel_id)
                self.kernels.discard(msg.kernel_id)
                return KernelDestroyed(kernel_id=msg.kernel_id, stats=STATS)
            case GetKernelStats():
                return KernelStats(stats=STATS)
            case InterruptKernel() | RestartKernel():
                return Ack()
            case CompleteCode():
                return CompletionResult(items=[msg.code + "int"])
            case _:
                if msg.msg_type == "rejoin":
                    self.rejoins += 1
                return None

    async def close(self) -> None:
        self.stop_heartbeats()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.link.close()


class Harness:
    """The running app plus helpers to sign requests and run fake agents."""

    def __init__(self, client: TestClient[Any, Any], keys: tuple[bytes, bytes], token: str
                 ) -> None:
        self.client = client
        self.app = client.server.app
        self.server_key = keys[1]
        self.token = token
        self.agents: list[FakeAgent] = []
        self.access_key, self.secret_key = "", ""

    @property
    def engine(self) -> Any:
        return self.app[DB]

    async def keypair(self, access_key: str | None = None, **kw: Any) -> tuple[str, str]:
        info = await create_keypair(self.engine, box=self.app[KEYPAIRS].box,
                                    user_id=kw.pop("user_id", "u"),
                                    access_key=access_key or "AKIA" + secrets.token_hex(8).upper(),
                                    secret_key=secrets.token_urlsafe(20), **kw)
        return info.access_key, info.secret_key

    def fake_agent(self, agent_id: str = "agent-1", **kw: Any) -> FakeAgent:
        endpoint = self.app[REGISTRY].link.endpoint  # type: ignore[union-attr]
        fake = FakeAgent(endpoint, self.server_key, self.token, agent_id, **kw)
        self.agents.append(fake)
        return fake

    async def agent(self, agent_id: str = "agent-1", **kw: Any) -> FakeAgent:
        fake = self.fake_agent(agent_id, **kw)
        reply = await fake.start()
        assert isinstance(reply, JoinAccepted), reply
        return fake

    def headers(self, method: str, path: str, keys: tuple[str, str] | None = None,
                content_type: str = "application/json") -> dict[str, str]:
        access, secret = keys or (self.access_key, self.secret_key)
        host = f"{self.client.host}:{self.client.port}"
        date = datetime.now(UTC)
        version = "v4.20181215"
        text = "\n".join([method, path, date.isoformat(), f"host:{host}",
                          f"content-type:{content_type}", f"x-backendai-version:{version}",
                          hashlib.sha256(b"").hexdigest()])
        key = hmac.new(secret.encode(), date.strftime("%Y%m%d").encode(), "sha256").digest()
        key = hmac.new(key, host.encode(), "sha256").digest()
        sig = hmac.new(key, text.encode(), "sha256").hexdigest()
        return {"Date": date.isoformat(), "Content-Type": content_type,
                "X-BackendAI-Version": version,
                "Authorization": f"BackendAI signMethod=HMAC-SHA256, credential={access}:{sig}"}

    async def call(self, method: str, path: str, body: Any = None,
                   keys: tuple[str, str] | None = None) -> tuple[int, Any]:
        data = orjson.dumps(body) if body is not None else b""
        resp = await self.client.request(method, path, data=data,
                                         headers=self.headers(method, path, keys))
        raw = await resp.read()
        return resp.status, (orjson.loads(raw) if raw else None)

    async def create(self, token: str = "sess-1", lang: str = "python",
                     keys: tuple[str, str] | None = None, **config: Any) -> tuple[int, Any]:
        return await self.call("POST", "/kernel/create", {
            "lang": lang, "clientSessionToken": token, "config": config}, keys)

    async def sessions(self) -> list[Any]:
        async with self.engine.connect() as conn:
            from sqlalchemy import select

            from manager.db.tables import kernels
            return list((await conn.execute(select(kernels))).all())


async def _truncate(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("TRUNCATE kernel_events, kernels, images, agents, keypairs CASCADE")
    finally:
        await conn.close()


@functools.cache
def session_secrets_key() -> Path:
    """One secrets key for the whole test process: the test database outlives a test,
    and a manager refuses to start on rows sealed with another key."""
    directory = Path(tempfile.mkdtemp(prefix="kraken-test-keys-"))
    atexit.register(shutil.rmtree, directory, True)
    return secretbox.generate(directory / "secretbox.key")


def make_manager_config(db_url: str, tmp_path: Path, **extra: Any) -> ManagerConfig:
    """A test manager config: fresh link keys, fast heartbeats, short timeouts."""
    linkkeys.generate(tmp_path / "keys")
    box_key = session_secrets_key()
    return ManagerConfig.model_validate({
        "db": {"url": db_url}, "redis": {"url": REDIS_URL},
        "secrets": {"key_file": str(box_key)},
        # the suite signs in from 127.0.0.1 many times; throttling has its own tests
        "console": {"max_failures_per_ip": 10_000},
        "link": {"bind": "tcp://127.0.0.1:*", "join_token": "join-" + secrets.token_hex(8),
                 "secret_key_file": str(tmp_path / "keys" / linkkeys.SECRET_NAME),
                 "public_key_file": str(tmp_path / "keys" / linkkeys.PUBLIC_NAME),
                 "heartbeat_interval": 0.3, "heartbeat_timeout": 60.0,
                 "create_timeout": 5.0, "request_timeout": 5.0},
        "exec": {"timeout": 5.0},
        "reconcile": {"settle": 0.5},
        **extra,
    })


@pytest.fixture
def mgr_config(mgr_db_url: str, tmp_path: Path) -> ManagerConfig:
    return make_manager_config(mgr_db_url, tmp_path)


@contextlib.asynccontextmanager
async def open_harness(config: ManagerConfig, truncate: bool = True
                       ) -> AsyncIterator[Harness]:
    """A running app for ``config`` (its database emptied first) with a keypair."""
    if truncate:
        await _truncate(config.db.url)
    keys = linkkeys.load(config.link)
    assert keys[0] is not None and keys[1] is not None
    app = build_app(config)
    async with TestClient(TestServer(app)) as client:
        h = Harness(client, (keys[0], keys[1]), config.link.read_join_token())
        h.access_key, h.secret_key = await h.keypair()
        try:
            yield h
        finally:
            for fake in h.agents:
                with contextlib.suppress(Exception):
                    await fake.close()


@pytest.fixture
async def harness(mgr_config: ManagerConfig) -> AsyncIterator[Harness]:
    async with open_harness(mgr_config) as h:
        yield h


async def wait_for(check: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, or fail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def fast_liveness(app: Any, timeout: float = 0.5, grace: float = 300.0) -> Any:
    """Make the app's registry judge liveness fast (heartbeat timeout, lost grace)."""
    registry = app[REGISTRY]
    registry.config = registry.config.model_copy(update={"heartbeat_timeout": timeout})
    registry.reconcile_config = registry.reconcile_config.model_copy(
        update={"lost_grace": grace})
    registry.db.since -= timeout  # as if the database had been up for a while
    return registry


async def lose(app: Any, fake: FakeAgent, grace: float = 300.0) -> None:
    """Silence ``fake`` until the app's registry marks it LOST."""
    fake.stop_heartbeats()
    registry = fast_liveness(app, grace=grace)
    await wait_for(lambda: not registry.hears(fake.agent_id), what="silence")
    await wait_for(lambda: _agent_status(app, fake.agent_id, registry), what="LOST")
    if grace < 5:
        await asyncio.sleep(grace + 0.05)
        await registry.check_liveness()  # past the grace: its sessions → ERROR


async def _agent_status(app: Any, agent_id: str, registry: Any) -> bool:
    await registry.check_liveness()
    async with app[DB].connect() as conn:
        from sqlalchemy import select

        from manager.db.tables import agents
        status = (await conn.execute(select(agents.c.status).where(
            agents.c.id == agent_id))).scalar_one()
    return bool(status == "LOST")
