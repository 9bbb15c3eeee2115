"""Hostile GraphQL documents are refused with 400 before anything runs, quickly and
without a traceback in the log; shared root data is read once per request."""
from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from manager.api.keys import CONFIG
from manager.graphql import queries
from tests.integration.graphql.conftest import gql
from tests.integration.manager.conftest import Harness

SESSION_FIELDS = ("sess_id id role status status_info created_at terminated_at agent "
                  "container_id access_key lang image tag mem_slot cpu_slot gpu_slot "
                  "num_queries cpu_used mem_max_bytes mem_cur_bytes net_rx_bytes "
                  "net_tx_bytes io_read_bytes io_write_bytes io_max_scratch_size "
                  "io_cur_scratch_size")
ALIASES_3050 = "{" + " ".join(f"a{i}: images {{ name }}" for i in range(3050)) + "}"
CYCLE = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A images { name } }"
DEEP = ("{ keypair { " + "compute_sessions { keypair { " * 5 + "access_key" + " } }" * 5
        + " } }")


def _assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """A client's mistake: at most one INFO line per request, never a traceback."""
    for record in caplog.records:
        assert record.exc_info is None and record.levelno <= logging.INFO, record
    assert "Traceback" not in caplog.text


async def _refused(h: Harness, query: str, keys: tuple[str, str] | None = None
                   ) -> dict[str, Any]:
    status, body = await gql(h, query, keys=keys)
    assert status == 400, body
    assert body["type"].endswith("/graphql-error") and body["errors"], body
    return body  # type: ignore[no-any-return]


async def test_gql_3050_aliases_refused_fast_and_quietly(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h = harness
    await h.agent()
    caplog.set_level(logging.DEBUG, logger="manager")
    started = time.perf_counter()
    body = await _refused(h, ALIASES_3050)
    assert time.perf_counter() - started < 1.0
    assert "more than 5000 tokens" in body["detail"]  # refused while parsing
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    _assert_quiet(caplog)
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


@pytest.mark.parametrize("query, expect", [
    (CYCLE, "cannot spread fragment"),
    ("{ ...A } fragment A on Query { images { ...A } }", "cannot spread fragment"),
    ("{ ...Missing }", "unknown fragment"),
    ("{ images { name no_such_field } }", "cannot query field"),
    ("{ agent(agent_id: 5, bogus: 1) { id } }", "unknown argument"),
    ("{" + " ".join(f"a{i}: images {{ name }}" for i in range(31)) + "}",
     "31 aliases"),
    (DEEP, "graphql.max_depth"),
    ("{ keypairs { compute_sessions { keypair { vfolders { name } } } } }",
     "graphql.max_cost"),
    ("{ images { " + "name " * 501 + "} }", "graphql.max_fields"),
    ("{ images { name } " + "# x\n" * 6000 + "}", "comments"),
    ("{ images(" + "a: 1 " * 3000 + ") { name } }", "tokens"),
    ("{ images { name " + "{ " * 600 + "} }", "syntax error"),
    ("{ images { name }", "syntax error"),
    ("query { images { name } } query { agents { id } }", "anonymous operation"),
])
async def test_gql_hostile_documents_answer_400(
        harness: Harness, caplog: pytest.LogCaptureFixture, query: str, expect: str) -> None:
    h = harness
    admin = await h.keypair(is_admin=True)
    caplog.set_level(logging.DEBUG, logger="manager")
    body = await _refused(h, query, keys=admin)
    assert expect in body["detail"].lower(), body["detail"]
    _assert_quiet(caplog)


async def test_gql_query_length_is_limited(harness: Harness) -> None:
    body = await _refused(harness, "{ images { name } }" + " " * 100_001)
    assert "100000" in body["detail"]


async def test_gql_limits_come_from_the_config(harness: Harness,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness
    monkeypatch.setattr(h.app[CONFIG].graphql, "max_aliases", 2)
    body = await _refused(h, "{ a: images { name } b: images { name } c: images { name } }")
    assert "the limit is 2 (graphql.max_aliases)" in body["detail"]


async def test_gql_image_list_read_once_for_many_aliases(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness
    await h.agent()
    calls: list[int] = []
    real = queries.list_images

    async def counted(engine: Any) -> Any:
        calls.append(1)
        return await real(engine)

    monkeypatch.setattr(queries, "list_images", counted)
    query = "{" + " ".join(f"a{i}: images {{ name tag }}" for i in range(30)) + "}"
    status, body = await gql(h, query)
    assert status == 200, body
    assert len(body) == 30 and all(v and v[0]["name"] == "kraken/python" for v in body.values())
    assert calls == [1]


async def test_gql_normal_admin_query_still_works(harness: Harness) -> None:
    h = harness
    admin = await h.keypair(is_admin=True)
    await h.agent()
    status, body = await gql(h, "query($s: String) { agents(status: $s) { id status } "
                                "images { name tag hash } keypairs { access_key } }",
                             {"s": "ALIVE"}, keys=admin)
    assert status == 200, body
    assert body["agents"] == [{"id": "agent-1", "status": "ALIVE"}]
    assert {k["access_key"] for k in body["keypairs"]} >= {admin[0], h.access_key}
