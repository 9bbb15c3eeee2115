"""Every root field and mutation with a plain keypair: own rows only, no mutations."""
from __future__ import annotations

import pytest

from tests.integration.graphql.conftest import gql, insert_sessions, insert_vfolder
from tests.integration.manager.conftest import Harness

REFUSED = [
    '{ keypairs { access_key } }',
    '{ agents { id } }',
    '{ agent(agent_id: "agent-1") { id } }',
    '{ compute_sessions(access_key: "%(other)s") { sess_id } }',
    '{ vfolders(access_key: "%(other)s") { name } }',
    '{ keypair(access_key: "%(other)s") { access_key } }',
    'mutation { create_keypair(user_id: "x", props: {is_admin: true}) { ok } }',
    'mutation { modify_keypair(access_key: "%(me)s", props: {is_admin: true}) { ok } }',
    'mutation { delete_keypair(access_key: "%(other)s") { ok } }',
    '{ __schema { types { name } } }',
]


async def _two_users(h: Harness) -> tuple[str, str]:
    other, _ = await h.keypair(user_id="other")
    await insert_sessions(h, h.access_key, 2, prefix="mine")
    await insert_sessions(h, other, 3, prefix="theirs")
    await insert_vfolder(h, h.access_key, "own")
    await insert_vfolder(h, other, "shared", shared_with=h.access_key)
    await insert_vfolder(h, other, "private")
    return h.access_key, other


@pytest.mark.parametrize("query", REFUSED)
async def test_gql_owner_refused(harness: Harness, query: str) -> None:
    me, other = await _two_users(harness)
    status, body = await gql(harness, query % {"me": me, "other": other})
    assert status in (400, 403), body
    assert body["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "GRAPHQL_VALIDATION_FAILED")
    assert body.get("data") in (None, {}) or all(v is None for v in body["data"].values())


async def test_gql_owner_sees_only_own(harness: Harness) -> None:
    me, _other = await _two_users(harness)
    await harness.agent()
    status, data = await gql(harness, """{
        keypair { access_key is_admin compute_sessions { sess_id } vfolders { name } }
        own: keypair(access_key: "ME") { access_key }
        compute_sessions { sess_id }
        scoped: compute_sessions(access_key: "ME") { sess_id }
        compute_session(sess_id: "theirs0") { sess_id }
        mine: compute_session(sess_id: "mine0") { sess_id workers { role } }
        compute_workers(sess_id: "theirs1") { id }
        vfolders { name }
        images { name }
      }""".replace("ME", me))
    assert status == 200, data
    assert data["keypair"]["access_key"] == me and data["keypair"]["is_admin"] is False
    assert [s["sess_id"] for s in data["keypair"]["compute_sessions"]] == ["mine0", "mine1"]
    assert data["own"] == {"access_key": me}
    assert [s["sess_id"] for s in data["compute_sessions"]] == ["mine0", "mine1"]
    assert data["scoped"] == data["compute_sessions"]
    assert data["compute_session"] is None and data["compute_workers"] == []
    assert data["mine"] == {"sess_id": "mine0", "workers": [{"role": "master"}]}
    assert sorted(f["name"] for f in data["vfolders"]) == ["own", "shared"]
    assert data["images"] == [{"name": "kraken/python"}]


async def test_gql_owner_refusal_leaks_nothing(harness: Harness) -> None:
    await _two_users(harness)
    status, body = await gql(harness, "{ keypair { access_key } agents { id } }")
    assert status == 403
    assert body["data"]["keypair"]["access_key"] == harness.access_key
    assert body["data"]["agents"] is None
    assert body["errors"] == [{"message": "agents needs an admin keypair",
                               "locations": [{"line": 1, "column": 26}],
                               "path": ["agents"], "extensions": {"code": "FORBIDDEN"}}]
