"""Pure rules of the streaming endpoints: waiting-input answers and events objects."""
from __future__ import annotations

from aiohttp import WSMessage, WSMsgType

from manager.api.stream_events import objects
from manager.api.stream_execute import input_text


def _text(data: str) -> WSMessage:
    return WSMessage(WSMsgType.TEXT, data, None)


def test_waiting_input_answers() -> None:
    assert input_text(_text('{"input": "kraken"}')) == "kraken"
    assert input_text(_text('{"code": "42"}')) == "42"
    assert input_text(_text('"quoted"')) == "quoted"
    assert input_text(_text("plain line")) == "plain line"
    assert input_text(_text('{"other": 1}')) == '{"other": 1}'  # kept as typed
    assert input_text(_text("[1, 2]")) == "[1, 2]"
    assert input_text(WSMessage(WSMsgType.BINARY, b"bytes \xff", None)) == "bytes \ufffd"


def _event(frm: str | None, to: str, reason: str | None) -> dict[str, object]:
    return {"event": "kernel-status", "from": frm, "to": to, "reason": reason,
            "at": "2026-01-01T00:00:00+00:00"}


def test_events_objects() -> None:
    assert objects(_event(None, "PENDING", None)) == [
        {"name": "status", "status": "PENDING", "from": None, "reason": None,
         "at": "2026-01-01T00:00:00+00:00"}]
    restarted = objects(_event("RESTARTING", "RUNNING", "restarted"))
    assert restarted[1] == {"name": "restarted", "reason": "restarted"}
    ended = objects(_event("TERMINATING", "TERMINATED", "user-requested|owner:3"))
    assert ended[0]["reason"] == "user-requested"  # replica bookkeeping stays inside
    assert ended[1] == {"name": "terminated", "reason": "user-requested"}
    assert objects(_event("RUNNING", "ERROR", None))[1] == {"name": "terminated",
                                                           "reason": "error"}
    assert [o["name"] for o in objects(_event("RUNNING", "TERMINATING", "x"))] == ["status"]
