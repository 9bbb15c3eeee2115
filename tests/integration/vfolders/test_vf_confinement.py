"""Every user path stays in its folder: '..', absolute paths, symlinks a session
planted inside the folder, and tar members with such names are refused."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import orjson
import pytest

from tests.integration.manager.conftest import Harness
from tests.integration.vfolders.conftest import download, folder_dir, upload
from tests.tarballs import tar_bytes


@pytest.fixture
async def planted(harness: Harness, vf_root: Path, tmp_path: Path) -> Path:
    """Folder 'd' in which a 'session' planted symlinks pointing outside."""
    _, created = await harness.call("POST", "/folders", {"name": "d"})
    root = folder_dir(vf_root, created["id"])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside, root / "out-dir")
    os.symlink(outside / "secret.txt", root / "out-file")
    os.symlink("/etc/passwd", root / "passwd")
    return outside


async def test_symlinks_out_are_refused(harness: Harness, planted: Path) -> None:
    h = harness
    for files in (["out-file"], ["passwd"], ["out-dir/secret.txt"], ["out-dir"]):
        status, prob = await download(h, "d", files)
        assert status == 400 and prob["type"].endswith("vfolder-path-not-allowed"), files
    status, _ = await h.call("GET", "/folders/d/files", {"path": "out-dir"})
    assert status == 400
    assert (await h.call("POST", "/folders/d/mkdir", {"path": "out-dir/new"}))[0] == 400
    assert (await upload(h, "d", {"out-dir/evil.txt": b"x"}))[0] == 400
    status, _ = await h.call("DELETE", "/folders/d/delete_files",
                             {"files": ["out-dir/secret.txt"]})
    assert status == 400
    assert sorted(os.listdir(planted)) == ["secret.txt"]
    assert (planted / "secret.txt").read_text() == "secret"  # noqa: ASYNC240


async def test_links_themselves_can_be_listed_replaced_and_deleted(
        harness: Harness, planted: Path, vf_root: Path) -> None:
    h = harness
    _, body = await h.call("GET", "/folders/d/files")
    modes = {f["filename"]: f["mode"][0] for f in orjson.loads(body["files"])}
    assert modes == {"out-dir": "l", "out-file": "l", "passwd": "l"}
    assert (await upload(h, "d", {"out-file": b"mine"}))[0] == 201  # replaces the link
    assert (planted / "secret.txt").read_text() == "secret"
    assert (await download(h, "d", ["out-file"]))[1]["out-file"] == b"mine"
    status, _ = await h.call("DELETE", "/folders/d/delete_files",
                             {"files": ["out-dir", "passwd"]})
    assert status == 200 and (planted / "secret.txt").exists()
    assert os.path.exists("/etc/passwd")  # noqa: ASYNC240


async def test_download_of_dir_leaves_out_links(harness: Harness, planted: Path) -> None:
    h = harness
    await upload(h, "d", {"sub/a.txt": b"a"})
    os.symlink(planted / "secret.txt", next((planted.parent / "vfolders" / "local").glob(
        "[0-9a-f]*")) / "sub" / "leak")
    status, got = await download(h, "d", ["sub"])
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(got["sub.tar"])) as tar:
        assert sorted(tar.getnames()) == ["sub", "sub/a.txt"]


async def test_tar_upload(harness: Harness) -> None:
    h = harness
    await h.call("POST", "/folders", {"name": "t"})
    good = tar_bytes([("a/b.txt", tarfile.REGTYPE, b"ab"), ("c.txt", tarfile.REGTYPE, b"c")])
    status, body = await upload(h, "t", {"into": good}, content_type="application/x-tar")
    assert status == 201 and body == {"uploaded": 2}
    status, got = await download(h, "t", ["into/a/b.txt", "into/c.txt"])
    assert got["b.txt"] == b"ab" and got["c.txt"] == b"c"
    evil = [[("../x", tarfile.REGTYPE, b"x")], [("/etc/x", tarfile.REGTYPE, b"x")],
            [("ok", tarfile.REGTYPE, b"x"), ("l", tarfile.SYMTYPE, b"/etc")],
            [("h", tarfile.LNKTYPE, b"/etc/passwd")], [("a/../../x", tarfile.REGTYPE, b"x")]]
    for members in evil:
        status, prob = await upload(h, "t", {".": tar_bytes(members)},
                                    content_type="application/x-tar")
        assert status == 400 and prob["type"].endswith("vfolder-path-not-allowed"), members
    status, prob = await upload(h, "t", {".": b"not a tar"}, content_type="application/x-tar")
    assert status == 400
    _, body = await h.call("GET", "/folders/t/files")
    assert [f["filename"] for f in orjson.loads(body["files"])] == ["into"]
