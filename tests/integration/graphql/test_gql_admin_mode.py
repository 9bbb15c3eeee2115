"""Every root field and mutation of the admin GraphQL API with an admin keypair."""
from __future__ import annotations

from typing import Any

from tests.integration.graphql.conftest import gql, insert_sessions, insert_vfolder
from tests.integration.manager.conftest import Harness


async def _setup(h: Harness) -> tuple[tuple[str, str], str]:
    admin = await h.keypair(is_admin=True, user_id="root@x")
    await h.agent()
    status, body = await h.create("live-1")
    assert status == 201, body
    await insert_sessions(h, h.access_key, 1, status="TERMINATED", prefix="old")
    await insert_vfolder(h, h.access_key, "data")
    live = [r for r in await h.sessions() if r.session_name == "live-1"]
    return admin, str(live[0].id)


async def test_gql_admin_lists_everything(harness: Harness) -> None:
    admin, kernel_id = await _setup(harness)
    status, data = await gql(harness, """
      query($st: String) {
        agents(status: "ALIVE") { id status region cpu_slots mem_slots used_cpu_slots }
        agent(agent_id: "agent-1") { id addr gpu_slots used_gpu_slots num_sessions }
        images { name tag hash reference installed installed_agents }
        keypairs { access_key is_admin }
        compute_sessions(status: $st) { sess_id id status agent container_id lang }
        vfolders { name host max_files max_size num_files cur_size owner }
      }""", {"st": "RUNNING"}, keys=admin)
    assert status == 200, data
    assert data["agents"][0]["id"] == "agent-1" and data["agents"][0]["cpu_slots"] == 4.0
    assert data["agents"][0]["used_cpu_slots"] == 1.0
    assert data["agent"]["num_sessions"] == 1
    assert data["images"] == [{"name": "kraken/python", "tag": "latest",
                               "hash": "sha256:kraken/python:latest",
                               "reference": "kraken/python:latest", "installed": True,
                               "installed_agents": ["agent-1"]}]
    assert {k["access_key"] for k in data["keypairs"]} == {harness.access_key, admin[0]}
    assert [s["id"] for s in data["compute_sessions"]] == [kernel_id]
    assert data["compute_sessions"][0]["agent"] == "agent-1"
    assert data["vfolders"][0]["max_files"] == 1000 and data["vfolders"][0]["max_size"] == 1024


async def test_gql_admin_filters_and_single_objects(harness: Harness) -> None:
    admin, kernel_id = await _setup(harness)
    status, data = await gql(harness, """
      query($ak: String, $uid: String!) {
        keypair(access_key: $ak) { access_key user_id concurrency_used
                                   compute_sessions(status: "TERMINATED") { sess_id }
                                   vfolders { name } }
        keypairs(user_id: $uid, is_active: true) { access_key }
        all: compute_sessions(access_key: $ak, status: "ALL") { sess_id }
        compute_session(sess_id: "live-1") { id sess_id role workers { id role } }
        compute_workers(sess_id: "live-1") { id status }
        mine: vfolders(access_key: $ak) { name }
        agent(agent_id: "nope") { id }
      }""", {"ak": harness.access_key, "uid": "root@x"}, keys=admin)
    assert status == 200, data
    assert data["keypair"]["concurrency_used"] == 1
    assert data["keypair"]["compute_sessions"] == [{"sess_id": "old0"}]
    assert data["keypair"]["vfolders"] == [{"name": "data"}]
    assert data["keypairs"] == [{"access_key": admin[0]}]
    assert sorted(s["sess_id"] for s in data["all"]) == ["live-1", "old0"]
    assert data["compute_session"]["id"] == kernel_id
    assert data["compute_session"]["workers"] == [{"id": kernel_id, "role": "master"}]
    assert data["compute_workers"] == [{"id": kernel_id, "status": "RUNNING"}]
    assert data["mine"] == [{"name": "data"}] and data["agent"] is None


CREATE = """mutation($user_id: %s, $input: KeyPairInput!) {
  create_keypair(user_id: $user_id, props: $input) {
    ok msg keypair { access_key secret_key user_id is_active is_admin
                     concurrency_limit rate_limit resource_policy } } }"""


async def _create(h: Harness, admin: tuple[str, str], user_id: Any, **props: Any) -> Any:
    uid_type = "Int!" if isinstance(user_id, int) else "String!"
    status, data = await gql(h, CREATE % uid_type, {"user_id": user_id, "input": {
        "is_active": True, "is_admin": False, "resource_policy": None,
        "rate_limit": 5000, "concurrency_limit": 2, **props}}, keys=admin)
    assert status == 200, data
    return data["create_keypair"]


async def test_gql_admin_keypair_mutations(harness: Harness) -> None:
    admin = await harness.keypair(is_admin=True)
    made = await _create(harness, admin, "new@x", resource_policy="default")
    kp = made["keypair"]
    assert made["ok"] and kp["user_id"] == "new@x" and kp["rate_limit"] == 5000
    assert kp["concurrency_limit"] == 2 and kp["resource_policy"] == "default"
    # the new keypair works at once with the signed API
    status, mine = await gql(harness, "{ keypair { access_key is_admin } }",
                             keys=(kp["access_key"], kp["secret_key"]))
    assert status == 200 and mine["keypair"] == {"access_key": kp["access_key"],
                                                 "is_admin": False}
    numeric = await _create(harness, admin, 42)
    assert numeric["keypair"]["user_id"] == "42"
    status, data = await gql(harness, """mutation($ak: String!) {
        modify_keypair(access_key: $ak, props: {is_active: false, rate_limit: 10}) { ok msg }
        missing: modify_keypair(access_key: "NOPE", props: {is_active: false}) { ok msg }
      }""", {"ak": kp["access_key"]}, keys=admin)
    assert data["modify_keypair"] == {"ok": True, "msg": "success"}
    assert data["missing"] == {"ok": False, "msg": "no such keypair"}
    status, data = await gql(harness, f'{{ keypair(access_key: "{kp["access_key"]}") '
                             '{ is_active rate_limit } }', keys=admin)
    assert data["keypair"] == {"is_active": False, "rate_limit": 10}


async def test_gql_admin_delete_keypair(harness: Harness) -> None:
    admin = await harness.keypair(is_admin=True)
    spare = await harness.keypair()
    await insert_sessions(harness, harness.access_key, 1)
    status, data = await gql(harness, """mutation($a: String!, $b: String!, $me: String!) {
        a: delete_keypair(access_key: $a) { ok msg }
        b: delete_keypair(access_key: $b) { ok msg }
        me: delete_keypair(access_key: $me) { ok msg }
        gone: delete_keypair(access_key: "NOPE") { ok msg } }""",
        {"a": spare[0], "b": harness.access_key, "me": admin[0]}, keys=admin)
    assert status == 200, data
    assert data["a"] == {"ok": True, "msg": "success"}
    assert data["b"]["ok"] is False and "sessions" in data["b"]["msg"]
    assert data["me"]["ok"] is False and data["gone"]["ok"] is False


async def test_gql_admin_introspection_and_prefix(harness: Harness) -> None:
    admin = await harness.keypair(is_admin=True)
    status, data = await gql(harness, "{ __schema { queryType { name } } }", keys=admin,
                             path="/v4/admin/graphql")
    assert status == 200 and data["__schema"]["queryType"]["name"] == "Query"
