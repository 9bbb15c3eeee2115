"""A minimal signed API client for the benchmarks (seed 004 §2.7 signing).

Reads BACKEND_ENDPOINT / BACKEND_ACCESS_KEY / BACKEND_SECRET_KEY, as written to
var/env.sh by `scripts/dev up`, unless they are given.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import statistics
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

API_VERSION = "v4.20181215"


class SignedClient:
    def __init__(self, session: aiohttp.ClientSession, endpoint: str = "",
                 access_key: str = "", secret_key: str = "") -> None:
        self.endpoint = URL(endpoint or os.environ["BACKEND_ENDPOINT"])
        self.access_key = access_key or os.environ["BACKEND_ACCESS_KEY"]
        self.secret_key = secret_key or os.environ["BACKEND_SECRET_KEY"]
        self.session = session

    def _headers(self, method: str, path: str) -> dict[str, str]:
        now = datetime.now(UTC)
        date = now.isoformat()
        host = self.endpoint.raw_authority
        body_hash = hashlib.sha256(b"").hexdigest()
        text = "\n".join([method, path, date, f"host:{host}", "content-type:application/json",
                          f"x-backendai-version:{API_VERSION}", body_hash])
        key = hmac.new(self.secret_key.encode(), now.strftime("%Y%m%d").encode(),
                       hashlib.sha256).digest()
        key = hmac.new(key, host.encode(), hashlib.sha256).digest()
        sig = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        return {
            "Date": date, "Content-Type": "application/json",
            "X-BackendAI-Version": API_VERSION,
            "Authorization":
                f"BackendAI signMethod=HMAC-SHA256, credential={self.access_key}:{sig}",
        }

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        async with self.session.request(method, str(self.endpoint.with_path(path)), data=data,
                                        headers=self._headers(method, path)) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    def ws_connect(self, path: str) -> Any:
        """A signed WebSocket upgrade of ``path`` (which may carry a query string)."""
        url = URL(str(self.endpoint.with_path("")).rstrip("/") + path, encoded=True)
        return self.session.ws_connect(url, headers=self._headers("GET", path))


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    idx = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[idx]


def summary(name: str, samples_ms: list[float]) -> str:
    return (f"{name}: n={len(samples_ms)} p50={percentile(samples_ms, 50):.2f} ms "
            f"p90={percentile(samples_ms, 90):.2f} ms p99={percentile(samples_ms, 99):.2f} ms "
            f"mean={statistics.fmean(samples_ms):.2f} ms")
