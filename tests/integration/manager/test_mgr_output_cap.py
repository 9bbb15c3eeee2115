"""The manager caps the console of one execute response (common.console's rule)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.codec import Message
from common.msg_agent import Execute, ExecuteResult
from manager.config import ManagerConfig
from tests.integration.manager.conftest import make_manager_config

pytestmark = pytest.mark.integration

LIMIT = 64 << 10


@pytest.fixture
def mgr_config(mgr_db_url: str, tmp_path: Path) -> ManagerConfig:
    return make_manager_config(mgr_db_url, tmp_path,
                               exec={"timeout": 5.0, "max_response": "64k"})


async def test_an_agent_cannot_make_the_manager_build_a_huge_response(harness: Any) -> None:
    agent = await harness.agent()
    honest = agent.handle

    async def flooding(msg: Message) -> Message | None:
        if isinstance(msg, Execute) and msg.code == "flood":
            return ExecuteResult(run_id=msg.run_id, status="finished", exit_code=0,
                                 console=[["html", "h" * 40_000]] * 20 + [["stdout", "end\n"]],
                                 dropped={"media": 5, "bogus": "x"})  # type: ignore[dict-item]
        return await honest(msg)
    agent.link._handler = flooding  # test seam: a misbehaving agent
    assert (await harness.create("sess-1"))[0] == 201
    status, body = await harness.call("POST", "/kernel/sess-1", {"mode": "query", "code": "flood"})
    assert status == 200
    result = body["result"]
    kinds = [k for k, _ in result["console"]]
    assert kinds == ["html", "stdout", "stderr"]  # one html fits 64 KiB, the rest dropped
    assert result["dropped"] == {"html": 19 * 40_000, "media": 5}
    assert "output dropped" in result["console"][-1][1]
    status, body = await harness.call("POST", "/kernel/sess-1", {"mode": "query", "code": "x"})
    assert status == 200 and "dropped" not in body["result"]  # only when something was
