"""Each /folders endpoint on real PostgreSQL through the signed API."""
from __future__ import annotations

import os
from pathlib import Path

import orjson

from jail.policy import KERNEL_UID
from tests.integration.manager.conftest import Harness
from tests.integration.vfolders.conftest import download, folder_dir, upload

PROB = "https://api.backend.ai/probs/"


async def test_create_list_info_delete(harness: Harness, vf_root: Path) -> None:
    h = harness
    status, body = await h.call("POST", "/folders/create", {"name": "data"})
    assert status == 201 and body["name"] == "data"
    status, body2 = await h.call("POST", "/v4/folders", {"name": "more", "host": []})
    assert status == 201
    path = folder_dir(vf_root, body["id"])
    assert path.is_dir()
    if os.geteuid() == 0:
        assert path.stat().st_uid == KERNEL_UID
    status, items = await h.call("GET", "/folders")
    assert status == 200 and [i["name"] for i in items] == ["data", "more"]
    assert items[0] == {"name": "data", "id": body["id"], "host": "local", "is_owner": True,
                        "permission": "rd"}
    status, paged = await h.call("GET", "/folders", {"paging": {"size": 1, "index": 1}})
    assert paged == {"paging": {"pages": 2, "count": 2}, "items": [items[1]]}
    status, info = await h.call("GET", "/v4/folders/data")
    assert status == 200 and info["item"]["numFiles"] == 0 and info["numFiles"] == 0
    assert info["id"] == body["id"] and info["linked"] is False and "created" in info
    assert (await h.call("DELETE", "/folders/data"))[0] == 204
    assert not path.exists()
    status, prob = await h.call("GET", "/folders/data")
    assert status == 404 and prob["type"] == PROB + "vfolder-not-found"


async def test_create_refusals_change_nothing(harness: Harness) -> None:
    h = harness
    assert (await h.call("POST", "/folders", {"name": "a"}))[0] == 201
    cases = [({}, 400, "invalid-api-params"), ({"name": 5}, 400, "invalid-api-params"),
             ({"name": "../x"}, 400, "invalid-api-params"),
             ({"name": "a"}, 400, "vfolder-already-exists"),
             ({"name": "b", "host": "elsewhere"}, 400, "invalid-api-params"),
             ({"name": "b", "host": 3}, 400, "invalid-api-params")]
    for body, status, slug in cases:
        got, prob = await h.call("POST", "/folders", body)
        assert (got, prob["type"]) == (status, PROB + slug), body
    assert (await h.call("POST", "/folders", {"name": "b"}))[0] == 201
    assert (await h.call("POST", "/folders", {"name": "c"}))[0] == 201
    got, prob = await h.call("POST", "/folders", {"name": "d"})  # max_folders = 3
    assert got == 406 and prob["type"] == PROB + "vfolder-limit-exceeded"
    resp = await h.client.post("/folders", data=b"{bad", headers=h.headers("POST", "/folders"))
    assert resp.status == 400
    assert len((await h.call("GET", "/folders"))[1]) == 3


async def test_upload_list_download_mkdir_delete(harness: Harness, vf_root: Path) -> None:
    h = harness
    await h.call("POST", "/folders", {"name": "d"})
    status, _ = await upload(h, "d", {"f.txt": b"hello", "sub/g.bin": b"\x00\x01"})
    assert status == 201, _
    status, body = await h.call("GET", "/folders/d/files", {"path": "."})
    files = orjson.loads(body["files"])
    assert [(f["filename"], f["mode"][0]) for f in files] == [("f.txt", "-"), ("sub", "d")]
    assert files[0]["size"] == 5 and isinstance(files[0]["mtime"], float)
    status, body = await h.call("GET", "/folders/d/files?path=sub")
    assert [f["filename"] for f in orjson.loads(body["files"])] == ["g.bin"]
    status, got = await download(h, "d", ["f.txt", "sub/g.bin"])
    assert status == 200 and got["f.txt"] == b"hello" and got["g.bin"] == b"\x00\x01"
    assert got["__total__"] == b"7"
    status, got = await download(h, "d", ["sub"])
    assert status == 200 and "sub.tar" in got
    assert (await h.call("POST", "/folders/d/mkdir", {"path": "x/y/z"}))[0] == 201
    status, info = await h.call("GET", "/folders/d")
    assert info["numFiles"] == 2
    status, prob = await h.call("DELETE", "/folders/d/delete_files", {"files": ["x"]})
    assert status == 400 and "recursive" in prob["detail"]
    status, _ = await h.call("DELETE", "/folders/d/delete_files",
                             {"files": ["x", "f.txt"], "recursive": True})
    assert status == 200
    status, body = await h.call("GET", "/folders/d/files")
    assert [f["filename"] for f in orjson.loads(body["files"])] == ["sub"]


async def test_bad_file_requests_change_nothing(harness: Harness, vf_root: Path) -> None:
    h = harness
    _, created = await h.call("POST", "/folders", {"name": "d"})
    await upload(h, "d", {"keep.txt": b"k"})
    root = folder_dir(vf_root, created["id"])
    cases = [
        ("GET", "/folders/d/files", {"path": "nope"}, 404),
        ("GET", "/folders/d/files", {"path": 5}, 400),
        ("GET", "/folders/d/files", {"path": "../"}, 400),
        ("POST", "/folders/d/mkdir", {}, 400),
        ("POST", "/folders/d/mkdir", {"path": "keep.txt"}, 400),
        ("POST", "/folders/d/mkdir", {"path": "/abs"}, 400),
        ("DELETE", "/folders/d/delete_files", {"files": []}, 400),
        ("DELETE", "/folders/d/delete_files", {"files": "keep.txt", "recursive": "x"}, 400),
        ("DELETE", "/folders/d/delete_files", {"files": ["keep.txt", "missing"]}, 404),
        ("DELETE", "/folders/d/delete_files", {"files": ["."], "recursive": True}, 400),
        ("GET", "/folders/d/download", {"files": ["missing"]}, 404),
        ("GET", "/folders/d/download", {"files": [1]}, 400),
        ("GET", "/folders/d/download", {}, 400),
        ("GET", "/folders/nope/files", {}, 404),
        ("GET", "/folders/bad%20name", {}, 400),
        ("DELETE", "/folders/nope", {}, 404),
    ]
    for method, path, body, status in cases:
        got, prob = await h.call(method, path, body)
        assert got == status, (method, path, body, prob)
        assert prob["type"].startswith(PROB) and prob["title"], prob
    assert sorted(p.name for p in root.iterdir()) == ["keep.txt"]
    assert (root / "keep.txt").read_bytes() == b"k"


async def test_upload_refusals_change_nothing(harness: Harness, vf_root: Path) -> None:
    h = harness
    _, created = await h.call("POST", "/folders", {"name": "d"})
    root = folder_dir(vf_root, created["id"])
    await h.call("POST", "/folders/d/mkdir", {"path": "dir"})
    cases = [
        ({"ok.txt": b"1", "../evil": b"x"}, 400, "vfolder-path-not-allowed"),
        ({"ok.txt": b"1", "/etc/evil": b"x"}, 400, "vfolder-path-not-allowed"),
        ({"ok.txt": b"1", "dir": b"x"}, 400, "invalid-api-params"),
        ({"big": b"x" * (2**20 + 1)}, 406, "vfolder-limit-exceeded"),
        ({f"f{i}": b"1" for i in range(6)}, 406, "vfolder-limit-exceeded"),
    ]
    for files, status, slug in cases:
        got, prob = await upload(h, "d", files)
        assert (got, prob["type"]) == (status, PROB + slug), (list(files), prob)
    assert [p.name for p in root.iterdir()] == ["dir"]
    resp = await h.client.post("/folders/d/upload", data=b"{}",
                               headers=h.headers("POST", "/folders/d/upload"))
    assert resp.status == 400
    assert (await upload(h, "nope", {"a": b"1"}))[0] == 404
    assert not list((vf_root / "local" / ".staging").iterdir())


async def test_limits_count_what_is_there(harness: Harness, vf_root: Path) -> None:
    h = harness
    await h.call("POST", "/folders", {"name": "d"})
    assert (await upload(h, "d", {f"f{i}": b"1" for i in range(5)}))[0] == 201
    assert (await upload(h, "d", {"f0": b"2"}))[0] == 201  # overwrite: still 5 files
    got, prob = await upload(h, "d", {"f5": b"1"})
    assert got == 406 and "5" in prob["detail"]
    await h.call("DELETE", "/folders/d/delete_files", {"files": ["f1"]})
    assert (await upload(h, "d", {"f5": b"1"}))[0] == 201
    _, got_files = await download(h, "d", ["f0"])
    assert got_files["f0"] == b"2"
