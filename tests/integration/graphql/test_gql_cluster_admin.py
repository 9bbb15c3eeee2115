"""Admin GraphQL for agent groups (scaling groups), resource presets and keypair resource
policies: an admin creates, lists, changes and deletes them, with refusals that say
why; a plain keypair reads presets and its own policy and changes nothing."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.integration.graphql.conftest import gql
from tests.integration.manager import cluster_rows
from tests.integration.manager.conftest import Harness

GIB = 2**30


@pytest.fixture(autouse=True)
async def _clean(harness: Harness) -> AsyncIterator[None]:
    await cluster_rows.reset(harness.engine)
    yield
    await cluster_rows.reset(harness.engine)


async def _ok(h: Harness, query: str, keys: tuple[str, str], **variables: Any) -> Any:
    status, data = await gql(h, query, variables or None, keys=keys)
    assert status == 200, data
    return data


async def test_admin_manages_scaling_groups(harness: Harness) -> None:
    admin = await harness.keypair(is_admin=True)
    data = await _ok(harness, """mutation {
        a: create_scaling_group(name: "gpu", props: {description: "GPU hosts",
                                                     scheduler: "drf"}) {
          ok msg scaling_group { name description is_active scheduler } }
        dup: create_scaling_group(name: "gpu", props: {}) { ok msg }
      }""", admin)
    assert data["a"] == {"ok": True, "msg": "success", "scaling_group": {
        "name": "gpu", "description": "GPU hosts", "is_active": True, "scheduler": "drf"}}
    assert data["dup"] == {"ok": False, "msg": "a group named 'gpu' exists"}

    data = await _ok(harness, """mutation {
        m: modify_scaling_group(name: "gpu", props: {is_active: false}) { ok msg }
        gone: modify_scaling_group(name: "nope", props: {is_active: false}) { ok msg } }""",
                     admin)
    assert data == {"m": {"ok": True, "msg": "success"},
                    "gone": {"ok": False, "msg": "no such group"}}
    data = await _ok(harness, """{ all: scaling_groups { name is_active scheduler }
        active: scaling_groups(is_active: true) { name }
        one: scaling_group(name: "gpu") { description } }""", admin)
    assert data["all"] == [{"name": "default", "is_active": True, "scheduler": "fifo"},
                           {"name": "gpu", "is_active": False, "scheduler": "drf"}]
    assert data["active"] == [{"name": "default"}] and data["one"]["description"] == "GPU hosts"

    status, data = await gql(harness, 'mutation { modify_scaling_group(name: "gpu", '
                             'props: {scheduler: "random"}) { ok } }', keys=admin)
    assert status == 400 and "scheduler must be one of ['fifo', 'drf']" in str(data)

    # a group an agent belongs to, or a policy allows, stays
    await harness.agent("agent-gpu", group="gpu")
    await harness.agent("agent-cpu")
    assert (await harness.create("cpu-session"))[0] == 201
    data = await _ok(harness, """{ agents { id scaling_group }
        compute_sessions { sess_id scaling_group agent } }""", admin)
    assert data["agents"] == [{"id": "agent-cpu", "scaling_group": "default"},
                              {"id": "agent-gpu", "scaling_group": "gpu"}]
    assert data["compute_sessions"] == [{"sess_id": "cpu-session", "scaling_group": "default",
                                         "agent": "agent-cpu"}]
    data = await _ok(harness, """mutation {
        gpu: delete_scaling_group(name: "gpu") { ok msg }
        default: delete_scaling_group(name: "default") { ok msg } }""", admin)
    assert data["gpu"] == {"ok": False, "msg": "1 agent(s) belong to this group"}
    assert data["default"] == {"ok": False, "msg": "the default group cannot be deleted"}
    data = await _ok(harness, """mutation {
        p: create_keypair_resource_policy(name: "cpu-only",
                                          props: {allowed_groups: ["default"]}) { ok }
        c: create_scaling_group(name: "spare", props: {}) { ok }
        m: modify_keypair_resource_policy(name: "cpu-only",
                                          props: {allowed_groups: ["spare"]}) { ok }
        d: delete_scaling_group(name: "spare") { ok msg } }""", admin)
    assert data["d"] == {"ok": False,
                         "msg": "resource policies allow this group: cpu-only"}


async def test_admin_manages_presets_used_at_create(harness: Harness) -> None:
    admin = await harness.keypair(is_admin=True)
    fake = await harness.agent(cpu="64", mem=str(64 * GIB))
    data = await _ok(harness, """mutation($slots: JSONString!) {
        create_resource_preset(name: "tiny", props: {resource_slots: $slots}) {
          ok msg resource_preset { name resource_slots } } }""", admin,
                     slots=orjson.dumps({"cpu": 0.5, "mem": "512m"}).decode())
    made = data["create_resource_preset"]
    assert made["ok"], made
    assert orjson.loads(made["resource_preset"]["resource_slots"]) == {
        "cpu": "0.5", "mem": str(512 * 2**20)}
    assert (await harness.create("tiny-one", resourcePreset="tiny"))[0] == 201
    assert fake.created[-1].slots == {"cpu": "0.5", "mem": str(512 * 2**20)}

    for bad, why in (({"cpu": -1}, "cpu must be a positive number"),
                     ({}, "must name at least one slot"),
                     ({"CPU!": 1}, "is not a slot name"),
                     ({"mem": "lots"}, "mem must be a number")):
        status, data = await gql(harness, """mutation($s: JSONString!) {
            modify_resource_preset(name: "tiny", props: {resource_slots: $s}) { ok } }""",
                                 {"s": orjson.dumps(bad).decode()}, keys=admin)
        assert status == 400 and why in data["errors"][0]["message"], (bad, data)
    data = await _ok(harness, """mutation { delete_resource_preset(name: "tiny") { ok } }""",
                     admin)
    assert data["delete_resource_preset"]["ok"]
    status, body = await harness.create("tiny-two", resourcePreset="tiny")
    assert status == 400 and "no resource preset named 'tiny'" in body["detail"]


async def test_admin_manages_resource_policies(harness: Harness) -> None:
    admin = await harness.keypair(is_admin=True)
    data = await _ok(harness, """mutation($slots: JSONString!) {
        create_keypair_resource_policy(name: "student", props: {
            max_concurrent_sessions: 2, total_resource_slots: $slots,
            max_session_lifetime: 3600, idle_timeout: 600, allowed_groups: ["default"]}) {
          ok msg resource_policy { name max_concurrent_sessions total_resource_slots
                                   max_session_lifetime idle_timeout allowed_groups } }
        unknown_group: create_keypair_resource_policy(name: "x",
                                                      props: {allowed_groups: ["nope"]}) {
          ok msg } }""", admin, slots=orjson.dumps({"cpu": 2, "mem": "4g"}).decode())
    made = data["create_keypair_resource_policy"]
    assert made["ok"], made
    policy = made["resource_policy"]
    assert orjson.loads(policy.pop("total_resource_slots")) == {"cpu": "2",
                                                                 "mem": str(4 * GIB)}
    assert policy == {"name": "student", "max_concurrent_sessions": 2,
                      "max_session_lifetime": 3600, "idle_timeout": 600,
                      "allowed_groups": ["default"]}
    assert data["unknown_group"] == {"ok": False, "msg": "no such agent group: nope"}

    # a keypair given the policy is held to it
    data = await _ok(harness, """mutation($ak: String!) {
        modify_keypair(access_key: $ak, props: {resource_policy: "student"}) { ok } }""",
                     admin, ak=harness.access_key)
    assert data["modify_keypair"]["ok"]
    data = await _ok(harness, """mutation($ak: String!) {
        modify_keypair(access_key: $ak, props: {resource_policy: "gold"}) { ok msg }
        create_keypair(user_id: "u2", props: {resource_policy: "gold"}) { ok msg } }""",
                     admin, ak=harness.access_key)
    assert data == {"modify_keypair": {"ok": False,
                                       "msg": "no keypair resource policy named 'gold'"},
                    "create_keypair": {"ok": False,
                                       "msg": "no keypair resource policy named 'gold'"}}
    await harness.agent(cpu="64", mem=str(64 * GIB))
    assert (await harness.create("one-a", instanceCores=1))[0] == 201
    status, body = await harness.create("two-b", instanceCores=1.5)
    assert status == 412 and "'student' allows at most cpu=2" in body["detail"]

    status, data = await gql(harness, """mutation {
        modify_keypair_resource_policy(name: "student",
                                       props: {max_concurrent_sessions: -1}) { ok } }""",
                             keys=admin)
    assert status == 400 and "max_concurrent_sessions must be between 0" in str(data)
    data = await _ok(harness, """mutation {
        used: delete_keypair_resource_policy(name: "student") { ok msg }
        default: delete_keypair_resource_policy(name: "default") { ok msg } }""", admin)
    assert data["used"] == {"ok": False, "msg": "1 keypair(s) use this policy"}
    assert data["default"] == {"ok": False, "msg": "the default policy cannot be deleted"}
    data = await _ok(harness, "{ keypair_resource_policies { name } }", admin)
    assert data["keypair_resource_policies"] == [{"name": "default"}, {"name": "student"}]


async def test_plain_keypair_reads_presets_and_its_own_policy_only(harness: Harness) -> None:
    await cluster_rows.give_policy(harness.engine, harness.access_key, "mine",
                                   max_concurrent_sessions=4)
    other = await harness.keypair()
    await cluster_rows.give_policy(harness.engine, other[0], "theirs")
    data = await _ok(harness, """{ resource_presets { name }
        keypair_resource_policy { name max_concurrent_sessions allowed_groups } }""",
                     (harness.access_key, harness.secret_key))
    assert [p["name"] for p in data["resource_presets"]] == ["large", "micro", "small",
                                                             "xlarge"]
    assert data["keypair_resource_policy"] == {"name": "mine", "max_concurrent_sessions": 4,
                                               "allowed_groups": ["default"]}
    for query in ('{ keypair_resource_policy(name: "theirs") { name } }',
                  "{ keypair_resource_policies { name } }",
                  "{ scaling_groups { name } }",
                  'mutation { create_scaling_group(name: "mine", props: {}) { ok } }',
                  'mutation { modify_keypair_resource_policy(name: "mine", '
                  "props: {max_concurrent_sessions: 0}) { ok } }",
                  'mutation { delete_resource_preset(name: "small") { ok } }'):
        status, data = await gql(harness, query)
        assert status == 403, (query, data)
        assert data["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # nothing changed
    status, body = await harness.call("GET", "/resource/presets")
    assert [p["name"] for p in body["presets"]] == ["large", "micro", "small", "xlarge"]
    data = await _ok(harness, "{ keypair_resource_policy { max_concurrent_sessions } }",
                     (harness.access_key, harness.secret_key))
    assert data["keypair_resource_policy"]["max_concurrent_sessions"] == 4
