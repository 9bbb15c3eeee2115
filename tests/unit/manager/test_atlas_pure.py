"""The job API's pure parts: the catalogue from labels and models.toml, upload field
spellings, cursors, download file names."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from common.errors import InvalidAPIParameters, InvalidVideo, ModelNotInstalled, NotFound
from manager.atlas import paging
from manager.atlas.catalogue import Catalogue, installed_from_labels, load_known
from manager.atlas.downloads import attachment, extension, safe_filename
from manager.atlas.form import canonical, job_fields
from manager.atlas.video import VideoInfo, check
from manager.config import AtlasLimitsConfig

GS_LABELS = {"kraken.atlas.model": "gaussian-splatting", "kraken.atlas.model-id": "2",
             "kraken.atlas.entry": "python3 -m kernels.models.run",
             "kraken.atlas.gpu": "optional",
             "kraken.atlas.outputs": '{"1": "point_cloud.ply"}'}


def test_known_models_are_the_seeds_and_none_installed() -> None:
    cat = Catalogue.build(load_known(), [])
    assert [(m.id, m.name) for m in cat.models] == [
        (1, "nerf2mesh"), (2, "gaussian-splatting"), (3, "decal"), (4, "MusePose"),
        (5, "InstantMesh")]
    assert cat.get("gs3d").name == "gaussian-splatting"
    assert cat.get("instant-mesh").name == "InstantMesh"
    assert cat.get("musepose").name == "MusePose"
    assert not any(m.public()["installed"] for m in cat.models)
    with pytest.raises(ModelNotInstalled) as e:
        cat.installed("gs3d")
    assert e.value.status == 400 and "not installed" in str(e.value.detail)
    with pytest.raises(NotFound):
        cat.get("stable-diffusion")


def test_an_image_label_installs_a_model_and_an_unknown_one_adds_it() -> None:
    other = {**GS_LABELS, "kraken.atlas.model": "teapot", "kraken.atlas.model-id": "9",
             "kraken.atlas.outputs": '{"1": "pot.glb"}'}
    cat = Catalogue.build(load_known(), [("kraken/gaussian-splatting:latest", GS_LABELS),
                                         ("kraken/teapot:latest", other)])
    model, inst = cat.installed("gaussian-splatting")
    assert inst.image == "kraken/gaussian-splatting:latest" and inst.gpu == "optional"
    assert inst.outputs == {"1": "point_cloud.ply"}
    assert model.limits.max_seconds == 180 and model.limits.max_bytes == 300 * 2**20
    assert cat.by_id("9").name == "teapot" and cat.by_id("9").installed is not None


@pytest.mark.parametrize("bad", [
    {"kraken.atlas.gpu": "maybe"}, {"kraken.atlas.entry": ""},
    {"kraken.atlas.outputs": '{"1": "../etc/passwd"}'}, {"kraken.atlas.outputs": "[1]"}])
def test_mislabelled_images_are_no_model(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        installed_from_labels("img", {**GS_LABELS, **bad})
    cat = Catalogue.build(load_known(), [("img", {**GS_LABELS, **bad})])
    assert cat.get("gaussian-splatting").installed is None


def test_config_overrides_limits_per_model() -> None:
    cat = Catalogue.build(load_known(), [], {"nerf2mesh": AtlasLimitsConfig(
        min_seconds=1, min_bytes="1k", min_resolution=(32, 24))})
    lim = cat.get("nerf2mesh").limits
    assert (lim.min_seconds, lim.min_bytes, lim.min_resolution) == (1, 1024, (32, 24))
    assert lim.max_seconds == 180  # untouched keys keep the seed's


def test_field_spellings() -> None:
    assert {canonical(n) for n in ("payLoad", "Payload", "payload")} == {"payload"}
    assert {canonical(n) for n in ("Epoch", "epoch")} == {"epoch"}
    for bad in ("PAYLOAD", "file", "", None):
        with pytest.raises(InvalidAPIParameters) as e:
            canonical(bad)
        assert e.value.extra["message"] == "Invalid request syntax"


def test_job_fields() -> None:
    f = job_fields({"itemName": " cup ", "epoch": "7", "resize": "1", "clientId": "c-1"},
                   needs_epoch=True)
    assert (f.item_name, f.epoch, f.resize, f.client_id) == ("cup", 7, True, "c-1")
    for text in ({"epoch": "1"}, {"itemName": "x"}, {"itemName": "x", "epoch": "0"},
                 {"itemName": "x", "epoch": "101"}, {"itemName": "x", "epoch": "a"},
                 {"itemName": "x", "epoch": "1", "resize": "maybe"},
                 {"itemName": "a\nb", "epoch": "1"},
                 {"itemName": "x", "epoch": "1", "clientId": "a b"}):
        with pytest.raises(InvalidAPIParameters):
            job_fields(text, needs_epoch=True)
    assert job_fields({"itemName": "x"}, needs_epoch=False).epoch is None


def test_cursor_round_trip_and_garbage() -> None:
    cur = paging.Cursor(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), uuid.uuid4())
    assert paging.decode(paging.encode(cur)) == cur
    for bad in ("x", "e30", paging.encode(cur)[:-3], "W10"):
        with pytest.raises(InvalidAPIParameters):
            paging.decode(bad)


def test_page_query() -> None:
    q = paging.page_query({"orderBy": "createdAt", "desc": "0", "limit": "50"})
    assert (q.newest_first, q.limit, q.cursor) == (False, 50, None)
    assert paging.page_query({}).newest_first and paging.page_query({}).limit == 10
    for bad in ({"limit": "51"}, {"limit": "0"}, {"limit": "x"}, {"desc": "maybe"},
                {"orderBy": "name"}):
        with pytest.raises(InvalidAPIParameters):
            paging.page_query(bad)


def test_download_names() -> None:
    assert safe_filename("my cup", "glb") == "my cup.glb"
    hostile = safe_filename('../../a"b\r\nc;d', "ply")
    assert hostile == "_.._a_b_c_d.ply" and "/" not in hostile
    assert safe_filename("...", "ply") == "item.ply"
    assert safe_filename("컵", "gif") == "item.gif"
    assert extension("mesh_1.glb") == "glb" and extension("request.tar.gz") == "tar.gz"
    assert attachment(safe_filename("a\nb", "obj")) == 'attachment; filename="a_b.obj"'


def test_video_limits() -> None:
    lim = Catalogue.build(load_known(), []).get("nerf2mesh").limits
    check(VideoInfo(30, 1920, 1080, "h264"), lim)
    check(VideoInfo(30, 720, 1280, "h264"), lim)  # portrait HD
    for info in (VideoInfo(10, 1920, 1080, "h264"), VideoInfo(200, 1920, 1080, "h264"),
                 VideoInfo(30, 640, 480, "h264"), VideoInfo(30, 3840, 2160, "h264")):
        with pytest.raises(InvalidVideo):
            check(info, lim)


async def test_the_hub_delivers_per_account_and_client_and_drops_a_slow_one() -> None:
    from manager.atlas.progress import ProgressHub, progress_message

    hub = ProgressHub(None, queue_size=2)  # type: ignore[arg-type]  # no Redis: dispatch only
    me, other = uuid.uuid4(), uuid.uuid4()
    with hub.listen(me, "c1") as mine, hub.listen(other, "c1") as theirs:
        body = progress_message("job", "train", 50)
        hub.dispatch({"account": me.hex, "client": "c1", "body": body})
        hub.dispatch({"account": me.hex, "client": "c2", "body": body})
        assert mine.queue.get_nowait() == body and theirs.queue.empty()
        for _ in range(3):
            hub.dispatch({"account": me.hex, "client": "c1", "body": body})
        assert mine.queue.qsize() == 2 and mine.dropped.is_set()
    assert hub._listeners == {}


def test_progress_lines_from_the_model_program() -> None:
    from manager.atlas.driver import _progress_line

    msg = _progress_line("j", b'{"stage": "train", "percent": 55, "message": "x", "time": 1}')
    assert msg is not None and (msg["percent"], msg["details"]) == (55.0, "train 55%")
    # parsed by kernels.models.jobfiles, the one definition: out of range or unknown stage
    # lines are skipped, never shown
    for bad in (b'{"stage": "train", "percent": 140, "message": "x", "time": 1}',
                b'{"stage": "bogus", "percent": 1, "message": "x", "time": 1}', b"{", b"[]", b'{"stage": "x"}', b'{"stage": "x", "percent": "NaN"}',
                b'{"stage": "x", "percent": "abc"}', b'"text"'):
        assert _progress_line("j", bad) is None
