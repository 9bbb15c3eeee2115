"""Drive a Jupyter Notebook server the way its browser page does: a page, a kernel, code.

Used by the tests that reach the python image's Jupyter service through the proxy
(the agent's relay in integration, the official client's ``backend.ai app`` in e2e).
"""
from __future__ import annotations

import asyncio
import datetime
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class JupyterVisit:
    tree_status: int  # GET /tree: the file browser page
    api_version: str  # GET /api
    result: str  # text/plain of ``6*7`` run in a new python3 kernel


def _execute_request(code: str, session: str) -> dict[str, Any]:
    return {
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request",
                   "username": "kraken", "session": session, "version": "5.3",
                   "date": datetime.datetime.now(datetime.UTC).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }


async def _run_code(http: aiohttp.ClientSession, base: str, kernel_id: str, code: str) -> str:
    session = uuid.uuid4().hex
    url = f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels?session_id={session}"
    async with http.ws_connect(url) as ws:
        request = _execute_request(code, session)
        await ws.send_json(request)
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            msg = frame.json()
            if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                continue
            if msg["msg_type"] == "execute_result":
                return str(msg["content"]["data"]["text/plain"])
            if msg["msg_type"] == "error":
                return f"error: {msg['content'].get('ename')}"
    return "the kernel channel closed without a result"


async def visit_jupyter(base: str, code: str = "6*7", timeout: float = 60.0) -> JupyterVisit:
    """Open the file browser, start a python3 kernel, run ``code``, shut the kernel down."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies from 127.0.0.1, as a browser keeps them
    async with aiohttp.ClientSession(cookie_jar=jar,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        async with http.get(f"{base}/tree") as page:
            tree_status = page.status
        async with http.get(f"{base}/api") as api:
            version = (await api.json())["version"]
        xsrf = {c.key: c.value for c in jar}.get("_xsrf", "")
        headers = {"X-XSRFToken": xsrf}
        async with http.post(f"{base}/api/kernels", json={"name": "python3"},
                             headers=headers) as made:
            assert made.status == 201, await made.text()
            kernel_id = (await made.json())["id"]
        try:
            result = await asyncio.wait_for(_run_code(http, base, kernel_id, code), timeout)
        finally:
            async with http.delete(f"{base}/api/kernels/{kernel_id}", headers=headers):
                pass
    return JupyterVisit(tree_status, version, result)
