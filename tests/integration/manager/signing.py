"""Request signing for tests, restated from docs/api.md (not imported from the manager):
v4.20181215 as client 18.12.3 signs, and Kraken's strict mode."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

VERSION = "v4.20181215"


def signed_headers(access: str, secret: str, method: str, path: str, host: str, *,
                   content_type: str = "application/json", body: bytes = b"",
                   strict: bool = False, nonce: str | None = None,
                   date: datetime | None = None) -> dict[str, str]:
    """Headers of a signed request; ``strict`` adds the nonce and the body digest."""
    date = date or datetime.now(UTC)
    lines = [method, path, date.isoformat(), f"host:{host}", f"content-type:{content_type}",
             f"x-backendai-version:{VERSION}"]
    extra: dict[str, str] = {}
    if strict:
        nonce = nonce or secrets.token_urlsafe(16)
        digest = hashlib.sha256(body).hexdigest()
        lines = ["kraken-strict-v1", *lines, f"x-kraken-nonce:{nonce}",
                 f"x-kraken-content-sha256:{digest}"]
        extra = {"X-Kraken-Nonce": nonce, "X-Kraken-Content-SHA256": digest}
    else:
        lines.append(hashlib.sha256(b"").hexdigest())
    key = hmac.new(secret.encode(), date.strftime("%Y%m%d").encode(), "sha256").digest()
    key = hmac.new(key, host.encode(), "sha256").digest()
    sig = hmac.new(key, "\n".join(lines).encode(), "sha256").hexdigest()
    return {"Host": host, "Date": date.isoformat(), "Content-Type": content_type,
            "X-BackendAI-Version": VERSION, **extra,
            "Authorization": f"BackendAI signMethod=HMAC-SHA256, credential={access}:{sig}"}
