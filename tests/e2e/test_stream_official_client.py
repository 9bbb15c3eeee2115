"""Streaming (seed 004 §2.12) through the official backend.ai-client==18.12.3 SDK,
unmodified: `stream_pty()` echoes and follows resizes, `stream_execute()` streams console
items with increasing `seq` (query and batch mode) and answers `waiting-input`, a dropped
execute stream resumes
with exactly what it missed, and another keypair's session is refused before the upgrade.

Each test runs a snippet in the client's own venv (`client_py`); the snippet prints `OK`
when every check in it held, or raises (the traceback is in the assertion message)."""
from __future__ import annotations

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e

# Helpers shared by the snippets. `session(token)` gets-or-creates a python session and
# destroys it afterwards. A guard of 60 s keeps a missing frame from hanging the suite.
PRELUDE = r'''
import asyncio, base64, contextlib, json, re, secrets
from datetime import datetime
import aiohttp
from dateutil.tz import tzutc
from ai.backend.client.exceptions import BackendClientError
from ai.backend.client.request import Request
from ai.backend.client.session import AsyncSession

GUARD = 60

@contextlib.asynccontextmanager
async def session(s, token):
    k = await s.Kernel.get_or_create("python", client_token=token)
    try:
        yield k
    finally:
        await k.destroy()

def stdin(text):
    return json.dumps({"type": "stdin", "chars": base64.b64encode(text.encode()).decode()})

def resize(rows, cols):
    # what StreamPty.resize() sends; 18.12.3 cannot reach it: WebSocketContextManager
    # ignores its response_cls argument, so stream_pty() yields a plain WebSocketResponse
    return json.dumps({"type": "resize", "rows": rows, "cols": cols})

async def frames(ws):
    """The JSON frames of a WebSocket until it closes."""
    async for msg in ws:
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
        yield json.loads(msg.data)

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")

def screen(text):
    """Terminal output as its lines look on screen: escape sequences dropped, and what
    follows a carriage return written over the start of the line."""
    lines = []
    for raw in ANSI.sub("", text).split("\n"):
        line = ""
        for part in raw.split("\r"):
            line = part + line[len(part):]
        lines.append(line)
    return "\n".join(lines)

async def read_until(ws, pattern, seen):
    """Read `out` frames into seen[0] until `pattern` matches a line of the screen."""
    async def loop():
        async for frame in frames(ws):
            assert frame["type"] == "out", frame
            seen[0] += base64.b64decode(frame["data"]).decode(errors="replace")
            found = re.search(pattern, screen(seen[0]), re.MULTILINE)
            if found:
                return found
        raise AssertionError(f"stream closed before {pattern!r}; output {seen[0]!r}")
    try:
        return await asyncio.wait_for(loop(), GUARD)
    except asyncio.TimeoutError:
        raise AssertionError(f"no {pattern!r} in {GUARD} s; output {seen[0]!r}") from None

async def run_frames(ws, stop=("finished",), answer=None):
    """Execute frames until one whose status is in `stop`; `answer` replies to
    waiting-input. Returns the frames."""
    got = []
    async def loop():
        async for frame in frames(ws):
            got.append(frame)
            if frame.get("status") == "waiting-input" and answer is not None:
                await ws.send_str(answer)
            if frame.get("status") in stop:
                return got
        raise AssertionError(f"stream closed before {stop}; frames {got!r}")
    try:
        return await asyncio.wait_for(loop(), GUARD)
    except asyncio.TimeoutError:
        raise AssertionError(f"no status in {stop} in {GUARD} s; frames {got!r}") from None

def stdout(frames):
    return "".join(text for f in frames for kind, text in f.get("console") or []
                   if kind == "stdout")

def check_seq(frames, first=1):
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(first, first + len(seqs))), seqs
    assert len({f["runId"] for f in frames}) == 1, frames

def signed_upgrade_headers(rqst):
    """Sign `rqst` as connect_websocket() does, plus the upgrade headers, for a plain GET
    whose refusal body (problem JSON) aiohttp's ws_connect would not show."""
    rqst.date = datetime.now(tzutc())
    rqst.headers["Date"] = rqst.date.isoformat()
    rqst.content_type = "application/octet-stream"
    rqst._sign(rqst._build_url().relative())
    headers = dict(rqst.headers)
    headers.update({"Connection": "Upgrade", "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": base64.b64encode(secrets.token_bytes(16)).decode()})
    return headers
'''


def sdk(client_py: Run, body: str) -> None:
    out = client_py(PRELUDE + body + "\nasyncio.run(main())\nprint('OK')\n", timeout=240)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stdout + out.stderr


def test_stream_pty_echoes_and_follows_resizes(client_py: Run) -> None:
    sdk(client_py, r'''
async def main():
    async with AsyncSession() as s, session(s, "e2e-pty") as k:
        async with k.stream_pty() as ws:
            seen = [""]
            await ws.send_str(stdin("echo $((6*7))\n"))
            await read_until(ws, r"^42$", seen)  # the output line, not the echoed command
            for rows, cols in ((31, 97), (20, 60)):
                await ws.send_str(resize(rows, cols))
                await ws.send_str(stdin(f"echo SZ $(stty size)\n"))
                await read_until(ws, rf"^SZ {rows} {cols}$", seen)
''')


def test_stream_execute_streams_items_then_finishes(client_py: Run) -> None:
    sdk(client_py, r'''
CODE = "import time\nfor i in range(3):\n    print(i)\n    time.sleep(0.3)\n"

async def main():
    async with AsyncSession() as s, session(s, "e2e-sexec") as k:
        async with k.stream_execute(CODE) as ws:
            got = await run_frames(ws)
        check_seq(got)
        assert got[-1]["status"] == "finished", got[-1]
        assert stdout(got) == "0\n1\n2\n", got
        # live: each number arrived in a later frame than the one before it (printed
        # 0.3 s apart), not all at once at the end
        arrived = [next(n for n in range(len(got)) if f"{i}\n" in stdout(got[:n + 1]))
                   for i in range(3)]
        assert arrived[0] < arrived[1] < arrived[2], got
''')


def test_stream_execute_batch_mode(client_py: Run) -> None:
    sdk(client_py, r'''
async def main():
    async with AsyncSession() as s, session(s, "e2e-sbatch") as k:
        opts = {"build": "echo 'print(6 * 7)' > six.py", "exec": "python3 six.py"}
        async with k.stream_execute(mode="batch", opts=opts) as ws:
            got = await run_frames(ws)
        check_seq(got)
        assert got[-1]["status"] == "finished" and got[-1]["exitCode"] == 0, got
        assert "42\n" in stdout(got), got
''')


def test_stream_execute_waiting_input_round_trip(client_py: Run) -> None:
    sdk(client_py, r'''
async def main():
    async with AsyncSession() as s, session(s, "e2e-sinput") as k:
        code = "n = input('name? ')\nprint('hi ' + n)\n"
        async with k.stream_execute(code) as ws:
            got = await run_frames(ws, answer="kraken")
        check_seq(got)
        assert any(f["status"] == "waiting-input" for f in got), got
        assert got[-1]["status"] == "finished" and "hi kraken\n" in stdout(got), got
''')


def test_stream_execute_resumes_exactly_where_it_dropped(client_py: Run) -> None:
    sdk(client_py, r'''
N = 30
CODE = f"import time\nfor i in range({N}):\n    print(i, flush=True)\n    time.sleep(0.1)\n"

async def main():
    async with AsyncSession() as s, session(s, "e2e-sresume") as k:
        path = f"/stream/kernel/{k.kernel_id}/execute"
        async with k.stream_execute(CODE) as ws:
            first = []
            async def some():
                async for frame in frames(ws):
                    first.append(frame)
                    if stdout(first).count("\n") >= 3:
                        return
            await asyncio.wait_for(some(), GUARD)
        # the socket is gone; the run goes on. Come back with the run id and last seq.
        check_seq(first)
        assert first[-1]["status"] != "finished", first
        run_id, last = first[-1]["runId"], first[-1]["seq"]
        rqst = Request(s, "GET", path, params={"runId": run_id, "after": str(last)})
        async with rqst.connect_websocket() as ws:
            rest = await run_frames(ws)
        check_seq(rest, first=last + 1)
        assert {f["runId"] for f in rest} == {run_id}, rest
        assert rest[-1]["status"] == "finished", rest[-1]
        assert stdout(first + rest) == "".join(f"{i}\n" for i in range(N)), (first, rest)
''')


def _second_keypair(cluster: Cluster) -> tuple[str, str]:
    out = cluster.manager_cli("keypair", "create", "-c", str(cluster.workdir / "manager.toml"),
                              "--user-id", "stream-other", "--shell")
    env = dict(line.removeprefix("export ").split("=", 1)
               for line in out.splitlines() if line.startswith("export "))
    return env["BACKEND_ACCESS_KEY"].strip("'\""), env["BACKEND_SECRET_KEY"].strip("'\"")


def test_stream_to_another_keypairs_session_is_refused(client_py: Run,
                                                       cluster: Cluster) -> None:
    other_access, other_secret = _second_keypair(cluster)
    sdk(client_py, rf'''
from ai.backend.client.config import APIConfig

async def main():
    async with AsyncSession() as mine, session(mine, "e2e-smine") as k:
        other = APIConfig(endpoint="{cluster.endpoint}", access_key="{other_access}",
                          secret_key="{other_secret}")
        async with AsyncSession(config=other) as s:
            for kind in ("pty", "execute", "events"):
                rqst = Request(s, "GET", f"/stream/kernel/{{k.kernel_id}}/{{kind}}")
                async with s.aiohttp_session.get(str(rqst._build_url()),
                                                 headers=signed_upgrade_headers(rqst)) as r:
                    assert r.status == 404, (kind, r.status, await r.text())
                    assert r.content_type == "application/problem+json", r.content_type
                    problem = await r.json(content_type=None)
                    assert problem["status"] == 404 and problem["type"], problem
            theirs = s.Kernel(k.kernel_id)
            try:
                async with theirs.stream_pty():
                    raise AssertionError("the SDK got a terminal on another keypair's session")
            except BackendClientError as e:
                assert "404" in str(e), e
        # the owner's terminal still works
        async with k.stream_pty() as ws:
            seen = [""]
            await ws.send_str(stdin("echo $((6*7))\n"))
            await read_until(ws, r"^42$", seen)
''')
