"""Invitations and permissions across two keypairs; mounts resolved for sessions."""
from __future__ import annotations

from pathlib import Path

import orjson

from tests.integration.manager.conftest import Harness
from tests.integration.vfolders.conftest import download, folder_dir, upload

PROB = "https://api.backend.ai/probs/"


async def _share(h: Harness, other: tuple[str, str], perm: str, name: str = "d") -> None:
    status, body = await h.call("POST", f"/folders/{name}/invite",
                                {"perm": perm, "user_ids": ["bob", "nobody", "bob"]})
    assert status == 200 and body == {"invited_ids": ["bob"]}
    _, invs = await h.call("GET", "/folders/invitations/list", keys=other)
    inv = invs["invitations"][0]
    assert (inv["inviter"], inv["perm"], inv["state"]) == ("u", perm, "pending")
    status, body = await h.call("POST", "/folders/invitations/accept",
                                {"inv_id": inv["id"], "inv_ak": other[0]}, keys=other)
    assert status == 200 and "granted" in body["msg"]


async def test_ro_share(harness: Harness) -> None:
    h = harness
    bob = await h.keypair(user_id="bob")
    await h.call("POST", "/folders", {"name": "d"})
    await upload(h, "d", {"f.txt": b"shared"})
    assert (await h.call("GET", "/folders/d", keys=bob))[0] == 404  # not yet shared
    await _share(h, bob, "ro")
    _, items = await h.call("GET", "/folders", keys=bob)
    assert [(i["name"], i["is_owner"], i["permission"]) for i in items] == [("d", False, "ro")]
    assert (await download(h, "d", ["f.txt"], keys=bob))[1]["f.txt"] == b"shared"
    status, body = await h.call("GET", "/folders/d/files", keys=bob)
    assert status == 200 and len(orjson.loads(body["files"])) == 1
    for method, path, body in [("POST", "/folders/d/mkdir", {"path": "x"}),
                               ("DELETE", "/folders/d/delete_files", {"files": ["f.txt"]}),
                               ("DELETE", "/folders/d", None),
                               ("POST", "/folders/d/invite", {"user_ids": ["u"]})]:
        got, prob = await h.call(method, path, body, keys=bob)
        assert (got, prob["type"]) == (403, PROB + "vfolder-permission-denied"), path
    got, prob = await upload(h, "d", {"g.txt": b"x"}, keys=bob)
    assert got == 403
    assert (await h.call("GET", "/folders/d"))[1]["numFiles"] == 1


async def test_rw_and_rd_shares(harness: Harness, vf_root: Path) -> None:
    h = harness
    bob = await h.keypair(user_id="bob")
    _, created = await h.call("POST", "/folders", {"name": "d"})
    await _share(h, bob, "rw")
    assert (await upload(h, "d", {"b.txt": b"bob"}, keys=bob))[0] == 201
    assert (await h.call("POST", "/folders/d/mkdir", {"path": "x"}, keys=bob))[0] == 201
    got, _ = await h.call("DELETE", "/folders/d/delete_files", {"files": ["b.txt"]}, keys=bob)
    assert got == 403  # rw may not delete
    await h.call("POST", "/folders", {"name": "e"})
    await _share(h, bob, "rd", "e")
    await upload(h, "e", {"x": b"1"})
    got, _ = await h.call("DELETE", "/folders/e/delete_files", {"files": ["x"]}, keys=bob)
    assert got == 200
    assert (folder_dir(vf_root, created["id"]) / "b.txt").read_bytes() == b"bob"


async def test_invitation_refusals(harness: Harness) -> None:
    h = harness
    bob = await h.keypair(user_id="bob")
    await h.call("POST", "/folders", {"name": "d"})
    cases = [({"perm": "xx", "user_ids": ["bob"]}, 400), ({"perm": "ro"}, 400),
             ({"perm": "ro", "user_ids": []}, 400), ({"perm": "ro", "user_ids": [3]}, 400),
             ({"perm": "ro", "user_ids": "bob"}, 400)]
    for body, status in cases:
        assert (await h.call("POST", "/folders/d/invite", body))[0] == status, body
    assert (await h.call("POST", "/folders/nope/invite", {"user_ids": ["bob"]}))[0] == 404
    assert (await h.call("GET", "/folders/invitations/list", keys=bob))[1] == {"invitations": []}
    status, body = await h.call("POST", "/folders/d/invite", {"perm": "ro", "user_ids": ["bob"]})
    assert body == {"invited_ids": ["bob"]}
    status, body = await h.call("POST", "/folders/d/invite", {"perm": "rw", "user_ids": ["bob"]})
    assert body == {"invited_ids": []}  # already invited: nothing new
    _, invs = await h.call("GET", "/folders/invitations/list", keys=bob)
    inv_id = invs["invitations"][0]["id"]
    for body, keys, status in [({"inv_id": 5}, bob, 400), ({"inv_id": "zz"}, bob, 400),
                               ({"inv_id": "0" * 32}, bob, 404), ({"inv_id": inv_id}, None, 404),
                               ({"inv_id": inv_id, "inv_ak": "AKIAOTHER"}, bob, 400)]:
        assert (await h.call("POST", "/folders/invitations/accept", body, keys))[0] == status
    await h.call("POST", "/folders", {"name": "d"}, keys=bob)  # name clash for bob
    got, prob = await h.call("POST", "/folders/invitations/accept", {"inv_id": inv_id}, keys=bob)
    assert (got, prob["type"]) == (400, PROB + "vfolder-already-exists")
    got, body = await h.call("DELETE", "/folders/invitations/delete", {"inv_id": inv_id},
                             keys=bob)
    assert got == 200 and body["msg"]
    assert (await h.call("DELETE", "/folders/invitations/delete", {"inv_id": inv_id},
                         keys=bob))[0] == 404
    _, items = await h.call("GET", "/folders", keys=bob)
    assert [(i["name"], i["is_owner"]) for i in items] == [("d", True)]


async def test_session_mounts(harness: Harness, vf_root: Path) -> None:
    h = harness
    agent = await h.agent()
    bob = await h.keypair(user_id="bob")
    _, mine = await h.call("POST", "/folders", {"name": "mine"})
    await h.call("POST", "/folders", {"name": "shared"})
    await _share(h, bob, "ro", "shared")
    status, body = await h.create("sess-1", mounts=["mine", "shared:data/in"])
    assert status == 201, body
    mounts = agent.created[-1].mounts
    assert mounts[0] == {"host_path": str(folder_dir(vf_root, mine["id"]).resolve()),
                         "target": "/home/work/mine", "mode": "rw"}
    assert (mounts[1]["target"], mounts[1]["mode"]) == ("/home/work/data/in", "rw")
    status, _ = await h.create("sess-2", keys=bob, mounts=["shared"])
    assert status == 201 and agent.created[-1].mounts[0]["mode"] == "ro"
    before = len(agent.created)
    for mounts_cfg, status, slug in [
            (["nope"], 404, "vfolder-not-found"), (["mine"] * 2, 400, "invalid-api-params"),
            ([f"m{i}" for i in range(6)], 400, "invalid-api-params"),
            (["mine:../x"], 400, "invalid-api-params"), (["mine:/abs"], 400, "invalid-api-params"),
            (["mine:"], 400, "invalid-api-params"), ("mine", 400, "invalid-api-params")]:
        got, prob = await h.create("sess-bad", mounts=mounts_cfg)
        assert (got, prob["type"]) == (status, PROB + slug), mounts_cfg
    got, _ = await h.create("sess-bob", keys=bob, mounts=["mine"])  # alice's folder, not shared
    assert got == 404
    assert len(agent.created) == before
    assert not [s for s in await h.sessions() if s.session_name in ("sess-bad", "sess-bob")]
