"""The official client 18.12.3, unmodified (its own venv), on the streaming endpoints of
the real app with a fake agent: ``stream_pty``, ``stream_execute`` and
the proxy of ``backend.ai app`` (its signed WebSocket GETs, query strings included, are
accepted)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.msg_agent import StreamData
from tests.integration.manager.conftest import Harness

ROOT = Path(__file__).resolve().parents[3]
CLIENT_VENV = Path(os.environ.get("KRAKEN_CLIENT_VENV", ROOT / "var" / "client-venv"))


def _env(h: Harness) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env.update(BACKEND_ENDPOINT=f"http://127.0.0.1:{h.client.port}",
               BACKEND_ACCESS_KEY=h.access_key, BACKEND_SECRET_KEY=h.secret_key,
               PYTHONWARNINGS="ignore")
    return env


@contextlib.asynccontextmanager
async def _client(h: Harness, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    if not (CLIENT_VENV / "bin" / "python").exists():
        pytest.fail(f"official client missing at {CLIENT_VENV}")
    proc = await asyncio.create_subprocess_exec(
        *args, env=_env(h), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()  # the snippets end when their stdin does
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


SDK_SNIPPET = textwrap.dedent("""
    import asyncio, base64, json
    from ai.backend.client.session import AsyncSession

    async def main():
        async with AsyncSession() as s:
            k = s.Kernel('sess-1')
            async with k.stream_pty() as ws:
                await ws.send_str(json.dumps({'type': 'stdin',
                                              'chars': base64.b64encode(b'echo 42\\r').decode()}))
                msg = await ws.receive_json()
                print('PTY', base64.b64decode(msg['data']).decode().strip(), flush=True)
            async with k.stream_execute('print(6 * 7)', mode='query') as ws:
                async for m in ws:
                    print('EXEC', m.data, flush=True)

    asyncio.run(main())
""")


async def test_official_sdk_stream_pty_and_stream_execute(harness: Harness) -> None:
    h = harness
    fake = await h.agent()
    assert (await h.create("sess-1"))[0] == 201
    async with _client(h, str(CLIENT_VENV / "bin" / "python"), "-c", SDK_SNIPPET) as proc:
        pty = await fake.next_stream(30)
        got = await pty.next()
        assert isinstance(got, StreamData) and got.data == b"echo 42\r"
        await pty.send_data(b"42\r\n")
        run = await fake.next_stream(30)
        assert run.start.kind == "execute" and run.start.params["code"] == "print(6 * 7)"
        await run.send_event(1, {"status": "finished", "console": [["stdout", "42\n"]],
                                 "exitCode": 0})
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = out.decode().splitlines()
    assert proc.returncode == 0, err.decode()
    assert lines[0] == "PTY 42"
    assert lines[1].startswith("EXEC ") and '"console":[["stdout","42\\n"]]' in lines[1]
    assert '"seq":1' in lines[1]


APP_SNIPPET = textwrap.dedent("""
    # `backend.ai app` itself cannot start on Python >= 3.10 (it passes loop= to
    # asyncio.start_server); its proxy class WSProxy is used here unmodified
    import asyncio, sys
    from ai.backend.client.cli.app import WSProxy
    from ai.backend.client.session import AsyncSession

    async def main():
        async with AsyncSession() as s:
            async def serve(reader, writer):
                await WSProxy(s, 'sess-1', 'jupyter', 'http', reader, writer).run()
            server = await asyncio.start_server(serve, '127.0.0.1', 0)
            print('PORT', server.sockets[0].getsockname()[1], flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            server.close()

    asyncio.run(main())
""")


async def test_official_app_proxy_carries_a_service(harness: Harness) -> None:
    h = harness
    fake = await h.agent()
    assert (await h.create("sess-1"))[0] == 201
    python = str(CLIENT_VENV / "bin" / "python")
    async with _client(h, python, "-c", APP_SNIPPET) as proc:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("PORT "), line
        reader, writer = await asyncio.open_connection("127.0.0.1", int(line.split()[1]))
        writer.write(b"GET /tree HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        stream = await fake.next_stream(30)
        assert stream.start.kind == "proxy"
        assert stream.start.params == {"service": "jupyter", "protocol": "http"}
        got = await stream.next()
        assert isinstance(got, StreamData) and got.data.startswith(b"GET /tree HTTP/1.1")
        body = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nJupyter"
        await stream.send_data(body)
        assert await asyncio.wait_for(reader.readexactly(len(body)), 30) == body
        writer.close()
        await writer.wait_closed()
