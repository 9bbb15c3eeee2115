"""A PostgreSQL outage (a private server, stopped and started by the test) answers
503 database-unavailable, logs no traceback per request, marks no agent LOST and no
session ERROR, and everything recovers without an operator."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from manager.api.app import build_app
from manager.api.keys import REGISTRY
from manager.atlas import tokens
from manager.db.engine import make_engine
from manager.db.migrate import upgrade_head
from manager.db.tables import agents
from tests.integration.manager.conftest import make_manager_config, open_harness, wait_for
from tests.integration.manager.privatepg import PrivatePostgres, private_postgres


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    async def migrate(url: str) -> None:
        engine = make_engine(url)
        try:
            await upgrade_head(engine)
        finally:
            await engine.dispose()

    with private_postgres() as pg:
        asyncio.run(migrate(pg.url))
        yield pg


async def _state(h: Any) -> tuple[str, str]:
    async with h.engine.connect() as conn:
        agent = (await conn.execute(sa.select(agents.c.status))).scalar_one()
    (row,) = [r for r in await h.sessions() if r.session_name == "survivor"]
    return agent, row.status


async def _recovered(h: Any) -> bool:
    try:
        return await _state(h) == ("ALIVE", "RUNNING")
    except Exception:
        return False


async def test_db_outage_kills_nothing_and_answers_503(private_pg: PrivatePostgres,
                                                       tmp_path: Path, caplog: Any) -> None:
    config = make_manager_config(private_pg.url, tmp_path)
    config = config.model_copy(update={"link": config.link.model_copy(
        update={"heartbeat_timeout": 1.5})})
    async with open_harness(config) as h:
        await h.agent()
        assert (await h.create("survivor"))[0] == 201
        registry = h.app[REGISTRY]
        registry.db.since -= 10  # the database has been up long enough to judge
        caplog.clear()
        caplog.set_level(logging.INFO)
        private_pg.stop()
        try:
            for call in (h.create("during"), h.call("GET", "/kernel/survivor"),
                         h.call("DELETE", "/kernel/survivor")):
                status, body = await call
                assert status == 503, body
                assert body["type"].endswith("database-unavailable"), body
            await asyncio.sleep(2 * config.link.heartbeat_timeout)  # heartbeats unstored
            assert await registry.check_liveness() == []
            assert registry.hears("agent-1")
        finally:
            private_pg.start()
        # the first liveness checks after the outage judge no one
        for _ in range(5):
            assert await registry.check_liveness() == []
            await asyncio.sleep(0.2)
        await wait_for(lambda: _recovered(h), what="agent ALIVE and session RUNNING")
        await wait_for(lambda: registry.lease.held.is_set(), what="the replica lease again")
        status, body = await h.call("POST", "/kernel/survivor", {"code": "1"})
        assert status == 200, body
        assert (await h.create("after"))[0] == 201
    assert "Traceback" not in caplog.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) <= 4, [r.getMessage() for r in warnings]  # once per outage


@pytest.mark.parametrize("atlas", [False, True], ids=["plain", "with-atlas"])
async def test_a_manager_started_during_an_outage_waits_for_it(private_pg: PrivatePostgres,
                                                              tmp_path: Path, atlas: bool
                                                              ) -> None:
    extra = {}
    if atlas:  # the generation product's contexts wait too, and close cleanly
        extra["atlas"] = {"token_key_file": str(tokens.generate(tmp_path / "atlas.key"))}
    config = make_manager_config(private_pg.url, tmp_path, **extra)
    private_pg.stop()
    server = TestServer(build_app(config))
    try:
        starting = asyncio.ensure_future(server.start_server())
        await asyncio.sleep(2.0)
        assert not starting.done()  # waiting, not exited
    finally:
        private_pg.start()
    try:
        await asyncio.wait_for(starting, 20)
    finally:
        await server.close()
