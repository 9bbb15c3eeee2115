"""Strict signing of a streamed multipart upload: the digest covers the whole raw body,
and a body swapped under a valid signature never reaches the folder."""
from __future__ import annotations

from typing import Any

import orjson

from tests.integration.manager.conftest import Harness
from tests.integration.manager.signing import signed_headers

BOUNDARY = "kraken-strict-test-boundary"


def _multipart(files: dict[str, bytes]) -> bytes:
    out = b""
    for name, data in files.items():
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"src\"; "
                f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


async def _upload(h: Harness, signed: bytes, sent: bytes) -> tuple[int, Any]:
    path = "/folders/d/upload"
    headers = signed_headers(h.access_key, h.secret_key, "POST", path,
                             f"{h.client.host}:{h.client.port}",
                             content_type="multipart/form-data", body=signed, strict=True)
    headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
    resp = await h.client.post(path, data=sent, headers=headers)
    raw = await resp.read()
    return resp.status, (orjson.loads(raw) if raw else None)


async def _names(h: Harness) -> list[str]:
    _, body = await h.call("GET", "/folders/d/files", {"path": "."})
    return sorted(f["filename"] for f in orjson.loads(body["files"]))


async def test_strict_multipart_upload_is_verified_before_any_part_is_stored(
        harness: Harness) -> None:
    h = harness
    assert (await h.call("POST", "/folders", {"name": "d"}))[0] == 201
    meant = _multipart({"a.txt": b"hello", "b.txt": b"world"})
    # a swapped body: the first part intact, the second replaced
    swapped = _multipart({"a.txt": b"hello", "evil.sh": b"rm -rf ~"})
    status, problem = await _upload(h, meant, swapped)
    assert status == 401 and problem["type"].endswith("/body-digest-mismatch")
    assert await _names(h) == []  # not even the intact first part was stored
    assert (await _upload(h, meant, meant))[0] in (200, 201, 204)
    assert await _names(h) == ["a.txt", "b.txt"]
