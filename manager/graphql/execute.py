"""Running one GraphQL request: parse (bounded), measure against the limits, validate
(per-caller rules), execute async. Nothing runs before all of these passed; a client's
mistake is answered 400 and logged as one INFO line, never with a traceback.

The reply has two shapes. The Backend.AI v4 shape, which client 18.12.3 reads, puts
the data object itself at the top level on success and sends errors with a non-2xx
status. A client asking for ``Accept: application/graphql-response+json`` (the
console does) gets the standard ``{"data", "errors"}`` envelope instead.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

from graphql import ASTValidationRule, GraphQLError, execute, parse, specified_rules, validate
from graphql.language import DocumentNode
from graphql.validation import VariablesInAllowedPositionRule

from common.errors import PROBLEM_TYPE_PREFIX
from manager.config import GraphQLConfig
from manager.graphql.authz import AuthorizationMiddleware, validation_rules
from manager.graphql.context import GqlContext
from manager.graphql.errors import (
    BAD_REQUEST,
    PARSE_FAILED,
    format_error,
    http_status,
    request_error,
)
from manager.graphql.limits import check_limits
from manager.graphql.pacing import PacingMiddleware
from manager.graphql.schema import SCHEMA
from manager.graphql.userid import LenientVariablesRule

log = logging.getLogger(__name__)

BASE_RULES: list[type[ASTValidationRule]] = [
    LenientVariablesRule if rule is VariablesInAllowedPositionRule else rule
    for rule in specified_rules]


@dataclass(frozen=True, slots=True)
class GqlRequest:
    query: str
    variables: dict[str, Any]
    operation_name: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> GqlRequest | str:
        """The request, or a message saying what is wrong with it."""
        query, variables = body.get("query"), body.get("variables") or {}
        operation = body.get("operationName") or None
        if not isinstance(query, str) or not query.strip():
            return "the request needs a non-empty string field 'query'"
        if not isinstance(variables, dict):
            return "'variables' must be a JSON object"
        if operation is not None and not isinstance(operation, str):
            return "'operationName' must be a string"
        return cls(query, variables, operation)


@dataclass(frozen=True, slots=True)
class GqlResult:
    data: dict[str, Any] | None
    errors: list[dict[str, Any]]

    @property
    def status(self) -> int:
        return http_status(self.errors)

    def body(self, standard: bool) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) in the standard or the Backend.AI v4 shape."""
        if standard:
            out: dict[str, Any] = {"data": self.data}
            if self.errors:
                out["errors"] = self.errors
            return (400 if self.data is None and self.errors else 200), out
        if self.errors:  # client 18.12.3 prints type/title/detail of failures
            detail = "; ".join(e["message"] for e in self.errors)
            return self.status, {"type": PROBLEM_TYPE_PREFIX + "graphql-error",
                                 "title": "GraphQL request failed", "detail": detail,
                                 "data": self.data, "errors": self.errors}
        return 200, self.data or {}


def bad_request(message: str) -> GqlResult:
    return GqlResult(None, [request_error(message, BAD_REQUEST)])


def _parse(query: str, limits: GraphQLConfig) -> DocumentNode | GqlResult:
    try:
        return parse(query, max_source_length=limits.max_query_chars,
                     max_lexical_tokens=limits.max_tokens, max_comments=limits.max_tokens)
    except GraphQLError as e:
        return GqlResult(None, [format_error(e, PARSE_FAILED)])


def check(document: DocumentNode, context: GqlContext, limits: GraphQLConfig
          ) -> list[GraphQLError]:
    """Why ``document`` may not run: the limits first (they bound what validation
    walks), then graphql-core's standard rules (fragment cycles, unknown fields, …)."""
    schema = SCHEMA.graphql_schema
    return check_limits(schema, document, limits) or validate(
        schema, document, validation_rules(context.caller, BASE_RULES))


def _refused(result: GqlResult, context: GqlContext) -> GqlResult:
    log.info("admin GraphQL request of %s refused: %s", context.caller.access_key,
             result.errors[0]["message"][:200])
    return result


async def run(request: GqlRequest, context: GqlContext, limits: GraphQLConfig) -> GqlResult:
    document = _parse(request.query, limits)
    if isinstance(document, GqlResult):
        return _refused(document, context)
    problems = check(document, context, limits)
    if problems:
        return _refused(GqlResult(None, [format_error(e) for e in problems]), context)
    result = execute(SCHEMA.graphql_schema, document, context_value=context,
                     variable_values=request.variables,
                     operation_name=request.operation_name,
                     middleware=[AuthorizationMiddleware(), PacingMiddleware()])
    if inspect.isawaitable(result):
        result = await result
    errors = [format_error(e) for e in result.errors or []]
    return GqlResult(result.data, errors)
