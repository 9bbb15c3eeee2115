"""Problem mapping, request validation and the session transition rules."""
from __future__ import annotations

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from common.errors import InvalidAPIParameters, KernelNotFound, QuotaExceeded
from common.status import SessionStatus as S
from common.status import can_transition
from manager.api.problems import problem_middleware, problem_response
from manager.api.schemas import parse_create, parse_execute


def test_kraken_error_becomes_problem_json() -> None:
    resp = problem_response(KernelNotFound("no session 'x'"))
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    assert resp.body is not None
    body = orjson.loads(resp.body)  # type: ignore[arg-type]
    assert body == {"type": "https://api.backend.ai/probs/kernel-not-found",
                    "title": "No such kernel session", "detail": "no session 'x'",
                    "status": 404, "version": "v4.20181215"}
    assert problem_response(QuotaExceeded()).status == 412


async def test_unexpected_errors_become_500_without_internals() -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("password=hunter2 in a stack")

    resp = await problem_middleware(make_mocked_request("GET", "/"), boom)
    assert resp.status == 500
    assert b"hunter2" not in resp.body  # type: ignore[attr-defined, operator]


async def test_aiohttp_404_becomes_problem() -> None:
    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    resp = await problem_middleware(make_mocked_request("GET", "/x"), missing)
    assert resp.status == 404 and resp.content_type == "application/problem+json"


def test_create_body_validation() -> None:
    spec = parse_create({"lang": "python", "clientSessionToken": "my-sess:1",
                         "config": {"instanceMemory": 0.5, "instanceCores": 2,
                                    "environ": {"A": "b"}, "clusterSize": 1, "mounts": []}})
    assert (spec.mem, spec.cpu, spec.environ) == (2**29, 2.0, {"A": "b"})
    bad_bodies = [
        ({}, "lang"),
        ({"lang": "python"}, "clientSessionToken"),
        ({"lang": "python", "clientSessionToken": "ab"}, "clientSessionToken"),
        ({"lang": "python", "clientSessionToken": "has space"}, "clientSessionToken"),
        ({"lang": 3, "clientSessionToken": "abcd"}, "lang"),
        ({"lang": "p", "clientSessionToken": "abcd", "config": {"clusterSize": 2}},
         "clusterSize"),
        ({"lang": "p", "clientSessionToken": "abcd", "config": {"mounts": ["../d"]}},
         "mounts"),
        ({"lang": "p", "clientSessionToken": "abcd", "config": {"mounts": "d"}},
         "mounts"),
        ({"lang": "p", "clientSessionToken": "abcd", "config": {"environ": {"A": 1}}},
         "environ"),
        ({"lang": "p", "clientSessionToken": "abcd", "config": {"instanceCores": "x"}},
         "instanceCores"),
        ({"lang": "p", "clientSessionToken": "abcd", "config": {"instanceMemory": -1}},
         "instanceMemory"),
    ]
    for body, needle in bad_bodies:
        with pytest.raises(InvalidAPIParameters, match=needle):
            parse_create(body)


def test_execute_body_validation() -> None:
    assert parse_execute({"mode": "query", "code": "print(1)"}).run_id is None
    assert parse_execute({"mode": "user-input", "code": "x", "runId": "r"}).mode == "input"
    for body in ({"mode": "shell"}, {"mode": "continue"}, {"code": 5},
                 {"mode": "batch", "options": []}):
        with pytest.raises(InvalidAPIParameters):
            parse_execute(body)


def test_transition_rules() -> None:
    assert can_transition(S.PENDING, S.SCHEDULED)
    assert can_transition(S.RUNNING, S.TERMINATING)
    assert not can_transition(S.TERMINATED, S.RUNNING)
    assert not can_transition(S.PENDING, S.RUNNING)
    assert not can_transition(S.ERROR, S.ERROR)
