"""Unit tests of the admin GraphQL pieces that need no services."""
from __future__ import annotations

import pytest
from graphql import GraphQLError, parse, validate

from common.errors import Forbidden, KrakenError, NotFound
from common.ids import AccessKey
from manager.graphql.authz import ROOT_RULES, Rule, check_root_field, owner_scope
from manager.graphql.errors import format_error
from manager.graphql.execute import BASE_RULES, GqlRequest, GqlResult
from manager.graphql.schema import SCHEMA
from manager.services.keypairs import KeypairInfo

ADMIN = KeypairInfo(AccessKey("AKADMIN"), "s" * 20, "root", True, True, 5)
PLAIN = KeypairInfo(AccessKey("AKPLAIN"), "s" * 20, "user", True, False, 5)


def test_gql_every_root_field_has_a_rule() -> None:
    schema = SCHEMA.graphql_schema
    fields = set(schema.query_type.fields) | set(schema.mutation_type.fields)  # type: ignore[union-attr]
    assert fields == set(ROOT_RULES)


@pytest.mark.parametrize("field", sorted(ROOT_RULES))
def test_gql_root_rules(field: str) -> None:
    operation = "Mutation" if field.endswith("_keypair") else "Query"
    check_root_field(ADMIN, operation, field)
    if ROOT_RULES[field] is Rule.ADMIN or operation == "Mutation":
        with pytest.raises(Forbidden):
            check_root_field(PLAIN, operation, field)
    else:
        check_root_field(PLAIN, operation, field)


def test_gql_unknown_root_field_denied() -> None:
    with pytest.raises(Forbidden):
        check_root_field(ADMIN, "Query", "secret_stuff")


def test_gql_owner_scope() -> None:
    assert owner_scope(ADMIN, None) is None and owner_scope(ADMIN, "X") == "X"
    assert owner_scope(PLAIN, None) == "AKPLAIN" == owner_scope(PLAIN, "AKPLAIN")
    with pytest.raises(Forbidden):
        owner_scope(PLAIN, "AKADMIN")


@pytest.mark.parametrize("decl", ["Int!", "String!", "Int", "String"])
def test_gql_user_id_accepts_int_and_string_variables(decl: str) -> None:
    doc = parse(f"query($u: {decl}) {{ keypairs(user_id: $u) {{ access_key }} }}")
    assert validate(SCHEMA.graphql_schema, doc, BASE_RULES) == []


def test_gql_other_variable_mismatches_still_fail() -> None:
    doc = parse("query($s: Int) { compute_sessions(status: $s) { sess_id } }")
    assert validate(SCHEMA.graphql_schema, doc, BASE_RULES)


def test_gql_error_format_hides_internals() -> None:
    internal = GraphQLError("boom", original_error=RuntimeError("password=hunter2"))
    out = format_error(internal)
    assert out["message"] == "an internal error occurred"
    assert out["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    known = format_error(GraphQLError("x", original_error=NotFound("no such thing")))
    assert known["message"] == "no such thing" and known["extensions"]["code"] == "NOT_FOUND"
    other = format_error(GraphQLError("x", original_error=KrakenError()))
    assert other["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


@pytest.mark.parametrize("body, message", [
    ({}, "non-empty string field 'query'"),
    ({"query": 3}, "non-empty string field 'query'"),
    ({"query": "{ a }", "variables": [1]}, "'variables' must be a JSON object"),
])
def test_gql_request_validation(body: dict[str, object], message: str) -> None:
    parsed = GqlRequest.from_json(body)
    assert isinstance(parsed, str) and message in parsed


def test_gql_result_shapes() -> None:
    ok = GqlResult({"agents": []}, [])
    assert ok.body(standard=False) == (200, {"agents": []})
    assert ok.body(standard=True) == (200, {"data": {"agents": []}})
    err = {"message": "m", "extensions": {"code": "FORBIDDEN"}}
    failed = GqlResult({"agents": None}, [err])
    status, body = failed.body(standard=False)
    assert status == 403 and body["errors"] == [err] and body["title"]
    assert failed.body(standard=True) == (200, {"data": {"agents": None}, "errors": [err]})
    assert GqlResult(None, [err]).body(standard=True)[0] == 400
