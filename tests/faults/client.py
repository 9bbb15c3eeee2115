"""A client that records the outcome of every call: the suite's "every call answered".

Each call has a timeout. It goes to one manager replica; when that replica does not
accept the connection (killed, restarting) it goes to the next, as a load balancer
would. The outcome is the HTTP status and the problem type, ``client-timeout`` when no
answer came within the timeout, or ``connection-error`` when no replica answered.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.client import SignedClient

TIMEOUT = "client-timeout"
NO_REPLICA = "connection-error"


@dataclass(frozen=True)
class Outcome:
    op: str
    status: int  # 0 when there was no HTTP answer
    kind: str  # "ok", a problem type, TIMEOUT or NO_REPLICA
    seconds: float
    body: Any = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_failure(self) -> bool:
        """What no fault excuses: a hang, or a 500 internal error."""
        return self.kind == TIMEOUT or self.status == 500 or self.kind == "internal-error"


def problem_kind(status: int, body: Any) -> str:
    if 200 <= status < 300:
        return "ok"
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        return body["type"].rsplit("/", 1)[-1]
    return f"http-{status}"


@dataclass
class RecordingClient:
    http: aiohttp.ClientSession
    endpoints: list[str]
    access_key: str
    secret_key: str
    outcomes: list[Outcome] = field(default_factory=list)
    _rotation: itertools.count[int] = field(default_factory=itertools.count)

    def _replicas(self) -> list[SignedClient]:
        start = next(self._rotation)
        order = self.endpoints[start % len(self.endpoints):] + \
            self.endpoints[:start % len(self.endpoints)]
        return [SignedClient(self.http, ep, self.access_key, self.secret_key) for ep in order]

    async def call(self, op: str, method: str, path: str, body: Any = None,
                   timeout: float = 30) -> Outcome:
        t0 = time.monotonic()
        outcome = Outcome(op, 0, NO_REPLICA, 0.0)
        for api in self._replicas():
            left = timeout - (time.monotonic() - t0)
            try:
                status, answer = await asyncio.wait_for(api.call(method, path, body), left)
            except TimeoutError:
                outcome = Outcome(op, 0, TIMEOUT, time.monotonic() - t0)
                break
            except (aiohttp.ClientConnectionError, ValueError) as e:
                if isinstance(e, aiohttp.ServerDisconnectedError):
                    outcome = Outcome(op, 0, "server-disconnected", time.monotonic() - t0)
                    break  # the request may have been served: not retried
                continue
            outcome = Outcome(op, status, problem_kind(status, answer),
                              time.monotonic() - t0, answer)
            break
        else:
            outcome = Outcome(op, 0, NO_REPLICA, time.monotonic() - t0)
        self.outcomes.append(outcome)
        return outcome

    # ---- the session API -----------------------------------------------------------
    async def create(self, token: str, timeout: float = 60) -> Outcome:
        return await self.call("create", "POST", "/kernel/create",
                               {"lang": "python", "clientSessionToken": token}, timeout)

    async def retry_503(self, attempt: Callable[[], Awaitable[Outcome]],
                        limit: float = 15.0) -> Outcome:
        """What a client does with a retryable 503 (an agent link being re-established):
        try again, for up to ``limit`` seconds (the convergence target)."""
        deadline = time.monotonic() + limit
        out = await attempt()
        while out.status == 503 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            out = await attempt()
        return out

    async def execute(self, kernel: str, code: str, timeout: float = 30) -> Outcome:
        return await self.call("execute", "POST", f"/kernel/{kernel}",
                               {"mode": "query", "code": code, "runId": ""}, timeout)

    async def run_to_end(self, kernel: str, code: str, timeout: float = 60) -> Outcome:
        """Execute ``code`` and continue the run until it finishes (or fails)."""
        t0 = time.monotonic()
        out = await self.execute(kernel, code, timeout)
        console: list[Any] = []
        while out.ok and out.body["result"]["status"] == "continued":
            console += out.body["result"].get("console", [])
            left = timeout - (time.monotonic() - t0)
            out = await self.call("execute", "POST", f"/kernel/{kernel}",
                                  {"mode": "continue", "code": "",
                                   "runId": out.body["result"]["runId"]}, max(left, 1))
        if out.ok:
            out.body["result"]["console"] = console + out.body["result"].get("console", [])
        return out

    async def destroy(self, kernel: str, timeout: float = 30) -> Outcome:
        return await self.call("destroy", "DELETE", f"/kernel/{kernel}", None, timeout)

    async def info(self, kernel: str, timeout: float = 15) -> Outcome:
        return await self.call("info", "GET", f"/kernel/{kernel}", None, timeout)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.is_failure]

    def kinds(self) -> Counter[str]:
        return tally(self.outcomes)


def tally(outcomes: list[Outcome]) -> Counter[str]:
    """``op:kind`` → count: a short summary for failure messages and reports."""
    return Counter(f"{o.op}:{o.status}:{o.kind}" for o in outcomes)


def stdout_of(out: Outcome) -> str:
    return "".join(text for kind, text in out.body["result"].get("console", [])
                   if kind == "stdout")
