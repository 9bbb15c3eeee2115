"""Every route of the manager (iterated from ``app.router``), signed with a valid
keypair, fed hostile input: malformed JSON, wrong JSON types, NUL bytes, huge numbers,
broken multipart bodies and part headers, bad query strings and bad percent-encoding.
None may answer 5xx; every refusal is JSON (a problem, or GraphQL errors)."""
from __future__ import annotations

import importlib
import io
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from common.codec import Message
from common.msg_agent import (
    DownloadFiles,
    FileList,
    FilesArchive,
    FilesUploaded,
    GetLogs,
    KernelLogs,
    ListFiles,
    UploadFiles,
)
from manager.api.keys import REGISTRY
from manager.atlas import tokens
from manager.config import ManagerConfig
from tests.integration.manager.conftest import FakeAgent, Harness, make_manager_config

SESSION, FOLDER = "sweep-sess", "sweep-folder"
STATIC = "/console/static/"  # aiohttp's FileResponse answers a missing asset 404, empty
PLACEHOLDERS = {"id": SESSION, "name": FOLDER}
# every body / query key a handler reads (manager/api, manager/vfolders, GraphQL)
KEYS = ("lang", "clientSessionToken", "config", "tag", "code", "mode", "runId", "options",
        "files", "path", "name", "host", "perm", "user_ids", "inv_id", "inv_ak", "paging",
        "recursive", "folder_path", "query", "variables", "operationName", "access_key",
        "secret_key", "items", "id", "target_path", "new_name", "status", "size", "index")
CONFIG_KEYS = ("instanceMemory", "instanceCores", "instanceGPUs", "instanceGPU",
               "clusterSize", "environ", "mounts")
HUGE = 10**400  # JSON allows it; orjson reads it as a float
VALUES: tuple[Any, ...] = (None, True, -1, 0, 2**64, HUGE, -HUGE, 1.7e308, 1e-320, "",
                           "a\x00b", "\x00", "%00", "../../etc/passwd", "/", "x" * 70_000,
                           [], [None], ["a\x00"], {}, {"a": {"b": "\x00"}}, [[[[1]]]])
RAW_BODIES: tuple[bytes, ...] = (
    b'{"a":', b"\xff\xfe\x00", b"[]", b'"str"', b"123", b"null", b"[" * 5000,
    b'{"a": "\\ud800"}', b'{"a": 1e400}', b'{"a": NaN}', b'{"lang": "python"' + b" " * 10 + b"}")
BOUNDARY = "sweepB"
MULTIPART_BODIES: tuple[bytes, ...] = (
    b'--sweepB\r\nContent-Disposition: form-data; name="src"; filename="a\x00b"\r\n\r\n'
    b"x\r\n--sweepB--\r\n",
    b"--sweepB\r\nContent-Disposition form-data name=src\r\n\r\nx\r\n--sweepB--\r\n",
    b"--sweepB\r\n\x00\x01\x02\r\n\r\nx\r\n--sweepB--\r\n",
    b'--sweepB\r\nContent-Disposition: form-data; name="src"; filename="a%00b"\r\n\r\n'
    b"x\r\n--sweepB--\r\n",
    b"--sweepB\r\nContent-Disposition: form-data; name=\"src\"; filename*=utf-8''%ff%fe"
    b"\r\n\r\nx\r\n--sweepB--\r\n",
    b'--sweepB\r\nContent-Disposition: form-data; name="src"; filename="a"\r\n\r\nx',
    b"--sweepB\r\nX: " + b"a" * 20_000 + b"\r\n\r\nx\r\n--sweepB--\r\n",
    b"--sweepB\r\nContent-Type: multipart/mixed; boundary=\r\n\r\nx\r\n--sweepB--\r\n",
    b'--sweepB\r\nContent-Disposition: form-data; name="src"; filename="../../x"\r\n'
    b"Content-Type: application/x-tar\r\n\r\nnot a tar\r\n--sweepB--\r\n",
    b"garbage", b"",
)
QUERIES = ("?path=%00", "?path=%zz&files=%ff%fe", "?paging=%7B&size=-1&index=1e400",
           "?path=" + "a" * 7000, "?a=1&a=2&=&&b", "?path=%E0%80%80%C0%AF",
           "?status=%00&access_key[]=x")
GRAPHQL = (
    "query($v: String) { keypair(access_key: $v) { access_key compute_sessions(status: $v)"
    " { sess_id } } compute_sessions(access_key: $v, status: $v) { sess_id } }",
    "query($v: String) { compute_session(sess_id: $v) { sess_id } vfolders(access_key: $v)"
    " { name } agents(status: $v) { id } }",
    "query($v: String!) { compute_workers(sess_id: $v) { id } agent(agent_id: $v) { id } }",
    "query($v: UserID) { keypairs(user_id: $v) { access_key } }",
    "mutation($v: UserID!, $p: KeyPairInput!) { create_keypair(user_id: $v, props: $p)"
    " { ok msg } }",
    "mutation($v: String!, $p: KeyPairInput!) { modify_keypair(access_key: $v, props: $p)"
    " { ok msg } delete_keypair(access_key: $v) { ok msg } }",
)
KEYPAIR_PROPS = ("is_active", "is_admin", "resource_policy", "concurrency_limit",
                 "rate_limit")
# Redis keys counted per client IP (127.0.0.1 for every test on this machine)
SHARED_REDIS_PREFIXES = (("manager.api.ratelimit", "KEY_PREFIX"),
                         ("manager.api.console_throttle", "PREFIX"))
BAD_PATHS = ("%00", "%zz", "%ff%fe", "..%2F..%2Fetc", "a%2F%00b", "x" * 5000)


class SweepAgent(FakeAgent):
    """The harness's fake agent, also answering the file messages."""

    async def handle(self, msg: Message) -> Message | None:
        match msg:
            case UploadFiles():
                return FilesUploaded(paths=[f["path"] for f in msg.files])
            case ListFiles():
                return FileList(abspath="/home/work", files=[])
            case DownloadFiles():
                return FilesArchive(archives=[b"" for _ in msg.files])
            case GetLogs():
                return KernelLogs(logs="")
        return await super().handle(msg)


def _concrete(template: str, fill: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: fill.get(m.group(1), "x"), template)


def routes(h: Harness, fill: dict[str, str] = PLACEHOLDERS) -> list[tuple[str, str]]:
    """(method, path) of every route, one per handler (the /v4 aliases share them)."""
    seen: dict[tuple[str, Any], str] = {}
    for route in h.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method == "HEAD" or template is None:
            continue
        if "prefix" in info and "path" not in info and "formatter" not in info:
            template += "/x"  # a static directory
        seen.setdefault((route.method, route.handler), _concrete(template, fill))
    return sorted({(method, path) for (method, _), path in seen.items()})


async def send(h: Harness, method: str, target: str, body: bytes,
               content_type: str = "application/json", boundary: str | None = None
               ) -> tuple[int, str, bytes]:
    url = URL(target, encoded=True)  # sent byte for byte, bad escapes included
    headers = h.headers(method, url.raw_path_qs, content_type=content_type)
    if boundary is not None:
        headers["Content-Type"] = f"{content_type}; boundary={boundary}"
    resp = await h.client.request(method, url, data=io.BytesIO(body), headers=headers)
    raw = await resp.read()
    if method == "DELETE" and resp.status < 300:
        await restore_targets(h)
    return resp.status, resp.content_type, raw


class Findings:
    """Every hostile request that answered 5xx or a non-JSON refusal."""

    def __init__(self) -> None:
        self.bad: list[str] = []
        self.count = 0

    def check(self, what: str, status: int, content_type: str, raw: bytes) -> None:
        self.count += 1
        if status >= 500:
            self.bad.append(f"{status} {what}: {raw[:200]!r}")
        elif status >= 400 and not content_type.endswith("json") and STATIC not in what:
            self.bad.append(f"{status} non-JSON refusal {what}: {content_type} {raw[:100]!r}")


def json_bodies(path: str) -> Iterator[bytes]:
    """Hostile JSON for a route: every key a handler reads, set to each hostile value
    (GraphQL variables too, for the GraphQL endpoint)."""
    yield from RAW_BODIES
    for value in VALUES:
        yield json.dumps({key: value for key in KEYS}).encode()
        yield json.dumps({"lang": "python", "clientSessionToken": "sweep-new", "path": ".",
                          "config": {key: value for key in CONFIG_KEYS}}).encode()
        if path.endswith("/admin/graphql"):
            props = {key: value for key in KEYPAIR_PROPS}
            for query in GRAPHQL:
                yield json.dumps({"query": query, "variables": {"v": value, "p": props}}
                                 ).encode()


@pytest.fixture
def mgr_config(mgr_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> ManagerConfig:
    """Folders under a temporary root; rate limits out of the way (a 429 would hide
    whether the route itself holds up) and counted under keys of this test alone: the
    thousands of anonymous requests must not fill the shared Redis's per-IP bucket that
    every other test on this machine counts against."""
    token = secrets.token_hex(6)
    for module, attr in SHARED_REDIS_PREFIXES:
        try:
            found = importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        monkeypatch.setattr(found, attr, f"{getattr(found, attr)}test-{token}.")
    # the generation product on too: its routes are swept with the rest
    atlas_key = tokens.generate(tmp_path / "atlas.key")
    return make_manager_config(mgr_db_url, tmp_path, vfolders={"root": str(tmp_path / "vf")},
                               ratelimit={"anonymous": 10**6, "keypair_default": 10**6},
                               atlas={"token_key_file": str(atlas_key)})


async def restore_targets(h: Harness) -> None:
    """The session and the folder the routes act on, made again if a request removed
    them (DELETE routes do)."""
    status, body = await h.create(SESSION)
    assert status in (200, 201), body
    status, body = await h.call("POST", "/folders", {"name": FOLDER})
    assert status in (200, 201) or (status == 400 and "exists" in str(body)), body


@pytest.fixture
async def swept(harness: Harness) -> Harness:
    """A harness signing as an admin (every code path open), with an agent, a running
    session and a folder for the routes to hit."""
    h = harness
    h.access_key, h.secret_key = await h.keypair(is_admin=True)
    fake = SweepAgent(h.app[REGISTRY].link.endpoint,  # type: ignore[union-attr]
                      h.server_key, h.token, "agent-1")
    h.agents.append(fake)
    await fake.start()
    await restore_targets(h)
    return h


async def test_hostile_json_bodies_never_5xx(swept: Harness) -> None:
    found = Findings()
    for method, path in routes(swept):
        for body in json_bodies(path):
            status, ctype, raw = await send(swept, method, path, body)
            found.check(f"{method} {path} {body[:80]!r}", status, ctype, raw)
    assert not found.bad, "\n".join(found.bad)
    assert found.count > 1000


async def test_hostile_multipart_never_5xx(swept: Harness) -> None:
    found = Findings()
    for method, path in routes(swept):
        for body in MULTIPART_BODIES:
            for boundary in (BOUNDARY, "", '"'):
                status, ctype, raw = await send(swept, method, path, body,
                                                "multipart/form-data", boundary)
                found.check(f"{method} {path} boundary={boundary!r} {body[:80]!r}",
                            status, ctype, raw)
    assert not found.bad, "\n".join(found.bad)


async def test_hostile_urls_never_5xx(swept: Harness) -> None:
    found = Findings()
    targets = [(m, p + q) for m, p in routes(swept) for q in QUERIES]
    for bad in BAD_PATHS:
        fill = dict.fromkeys(PLACEHOLDERS, bad)
        targets += [(m, p) for m, p in routes(swept, fill) if bad in p]
    for method, target in targets:
        status, ctype, raw = await send(swept, method, target, b"{}")
        found.check(f"{method} {target[:120]}", status, ctype, raw)
    assert not found.bad, "\n".join(found.bad)


async def test_upload_nul_filename_and_bad_part_header_answer_400(swept: Harness) -> None:
    """The two cases of the penetration test, on both upload endpoints."""
    for path in (f"/kernel/{SESSION}/upload", f"/folders/{FOLDER}/upload"):
        for body in MULTIPART_BODIES[:4]:
            status, ctype, raw = await send(swept, "POST", path, body,
                                            "multipart/form-data", BOUNDARY)
            assert status == 400 and ctype == "application/problem+json", (path, body, raw)
            assert b"invalid-api-params" in raw or b"vfolder-path-not-allowed" in raw, raw


async def test_overlong_request_line_is_refused_before_the_app(swept: Harness) -> None:
    """aiohttp's HTTP parser refuses a request line over 8,190 bytes itself (400,
    text/plain): the app never sees it."""
    status, _, _ = await send(swept, "GET", f"/kernel/{SESSION}/files?path=" + "a" * 9000,
                              b"{}")
    assert status == 400
