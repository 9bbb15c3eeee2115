"""The query limits (manager.graphql.limits): what is counted, and that measuring is
cheap and safe on hostile documents (fragment bombs, cycles, unknown names)."""
from __future__ import annotations

import time

import pytest
from graphql import get_introspection_query, parse

from manager.config import GraphQLConfig
from manager.graphql.limits import QueryStats, check_limits, measure
from manager.graphql.schema import SCHEMA

SCHEMA_ = SCHEMA.graphql_schema
DEFAULTS = GraphQLConfig()
SESSION_FIELDS = ("sess_id id role status status_info created_at terminated_at agent "
                  "container_id access_key lang image tag mem_slot cpu_slot gpu_slot "
                  "num_queries cpu_used mem_max_bytes mem_cur_bytes net_rx_bytes "
                  "net_tx_bytes io_read_bytes io_write_bytes io_max_scratch_size "
                  "io_cur_scratch_size")
# what client 18.12.3 sends (ai/backend/client/{agent,image,keypair,session,vfolder}.py)
CLIENT_QUERIES = [
    "query($status: String) {  agents(status: $status) {    id addr status first_contact "
    "mem_slots cpu_slots gpu_slots  }}",
    "query($agent_id: String!) {  agent(agent_id: $agent_id) {    id addr status "
    "first_contact mem_slots cpu_slots gpu_slots  }}",
    "query {  images {    name tag hash  }}",
    "query($user_id: String!, $is_active: Boolean) {  keypairs(user_id: $user_id, "
    "is_active: $is_active) {    access_key secret_key is_active is_admin created_at "
    "last_used concurrency_limit concurrency_used rate_limit num_queries "
    "resource_policy  }}",
    "query($access_key: String, $status: String) {  compute_sessions(access_key: "
    f"$access_key, status: $status) {{    {SESSION_FIELDS}  }}}}",
    "query($sess_id: String) {  compute_session(sess_id: $sess_id) {    "
    f"{SESSION_FIELDS} workers {{ {SESSION_FIELDS} }}  }}}}",
    "query { vfolders { id host name max_files max_size created_at last_used num_files "
    "cur_size } }",
]


def stats(query: str, list_size: int = 50) -> QueryStats:
    return measure(SCHEMA_, parse(query), list_size)[""]


def test_gql_limits_counts_fields_aliases_depth_and_cost() -> None:
    s = stats("{ images { name tag } a: images { name } agents { id } }")
    assert (s.fields, s.aliases, s.depth) == (7, 1, 2)
    assert s.cost == (50 + 50 * 2) + (50 + 50) + (50 + 50)
    nested = stats("{ keypairs { compute_sessions { workers { id } } } }", list_size=10)
    assert nested.depth == 4
    assert nested.cost == 10 + 10 * (10 + 10 * (1 + 1))  # a session has one worker


def test_gql_limits_expand_fragments_and_inline_fragments() -> None:
    s = stats("{ ...F x: images { ...I } } fragment F on Query { images { ...I } } "
              "fragment I on Image { name ... on Image { tag } }")
    assert (s.fields, s.aliases, s.depth) == (6, 1, 2)


def test_gql_limits_fragment_bomb_is_measured_fast() -> None:
    # each fragment spreads the previous one twice: 2^40 selections once expanded
    parts = ["fragment F0 on Query { images { name } }"]
    parts += [f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 41)]
    doc = parse("{ ...F40 } " + " ".join(parts))
    started = time.perf_counter()
    errors = check_limits(SCHEMA_, doc, DEFAULTS)
    assert time.perf_counter() - started < 0.5
    assert any("graphql.max_fields" in e.message for e in errors)
    assert stats("{ ...F40 } " + " ".join(parts)).fields == 2 * 2**40


@pytest.mark.parametrize("query", [
    "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A images { name } }",
    "{ ...A } fragment A on Query { images { ...A } }",
    "{ ...Missing images { name } }",
    "{ nope { deeper } images { not_a_field { x } } }",
    "fragment A on Nope { x } { ... on Nope2 { y } ...A }",
])
def test_gql_limits_survive_invalid_documents(query: str) -> None:
    s = stats(query)  # validation reports these; measuring must not crash or loop
    assert s.fields >= 1


def test_gql_limits_introspection_depth_is_not_counted_but_cost_is() -> None:
    full = get_introspection_query(descriptions=True, specified_by_url=True,
                                   directive_is_repeatable=True, schema_description=True,
                                   input_value_deprecation=True)
    assert check_limits(SCHEMA_, parse(full), DEFAULTS) == []
    s = measure(SCHEMA_, parse(full), DEFAULTS.list_size)["IntrospectionQuery"]
    assert s.depth == 0 and s.cost > 1000
    fan = "{ __schema { types { " + "fields { type { " * 6 + "name" + " } }" * 6 + " } } }"
    errors = check_limits(SCHEMA_, parse(fan), DEFAULTS)
    assert [e.message for e in errors if "graphql.max_cost" in e.message]


@pytest.mark.parametrize("query", CLIENT_QUERIES)
def test_gql_limits_accept_the_official_client_queries(query: str) -> None:
    assert check_limits(SCHEMA_, parse(query), DEFAULTS) == []


@pytest.mark.parametrize("limit, query", [
    ("max_aliases", "{ " + " ".join(f"a{i}: images {{ name }}" for i in range(31)) + " }"),
    ("max_fields", "{ images { " + "name " * 501 + "} }"),
    ("max_depth", "{ keypair { " + "compute_sessions { keypair { " * 5 + "access_key"
     + " } }" * 5 + " } }"),
    ("max_cost", "{ keypairs { compute_sessions { keypair { vfolders { name } } } } }"),
])
def test_gql_limits_each_limit_refuses(limit: str, query: str) -> None:
    errors = [e.message for e in check_limits(SCHEMA_, parse(query), DEFAULTS)]
    assert [m for m in errors if f"graphql.{limit}" in m], errors


def test_gql_limits_named_operations_are_checked_each() -> None:
    doc = parse("query Ok { images { name } } query Bad { keypair { "
                + "compute_sessions { keypair { " * 5 + "access_key" + " } }" * 5 + " } }")
    errors = check_limits(SCHEMA_, doc, DEFAULTS)
    assert errors and all("'Bad'" in e.message for e in errors)
