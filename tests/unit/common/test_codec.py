from __future__ import annotations

import msgpack
import pytest

from common.codec import Message, Protocol, WireFormatError
from common.msg_agent import AGENT_PROTOCOL, Execute, ExecuteResult, Join
from common.msg_runner import RUNNER_PROTOCOL, RunQuery


def test_roundtrip_keeps_fields_and_corr_id() -> None:
    msg = Execute(kernel_id="k", run_id="r", mode="query", code="print(1)")
    decoded, corr = AGENT_PROTOCOL.decode(AGENT_PROTOCOL.encode(msg, 42))
    assert decoded == msg and corr == 42


def test_unknown_fields_are_ignored_and_defaults_filled() -> None:
    frame = msgpack.packb([1, "execute-result", -3, {"run_id": "r", "status": "finished",
                                                     "console": [], "from_the_future": 1}])
    msg, corr = AGENT_PROTOCOL.decode(frame)
    assert isinstance(msg, ExecuteResult)
    assert msg.exit_code is None and msg.files == [] and corr == -3


@pytest.mark.parametrize("frame", [
    b"\xc1garbage",
    msgpack.packb([1, "no-such-type", 0, {}]),
    msgpack.packb([0, "execute", 0, {}]),
    msgpack.packb([1, "execute", 0, {"kernel_id": "k"}]),  # required fields missing
    msgpack.packb([1, "execute", 0, ["not", "a", "map"]]),
])
def test_bad_frames_raise_wire_format_error(frame: bytes) -> None:
    with pytest.raises(WireFormatError):
        AGENT_PROTOCOL.decode(frame)


def test_protocols_do_not_mix() -> None:
    with pytest.raises(WireFormatError):
        AGENT_PROTOCOL.encode(RunQuery(run_id="r", code=""))
    with pytest.raises(WireFormatError):
        RUNNER_PROTOCOL.decode(AGENT_PROTOCOL.encode(
            Join(agent_id="a", token="t", region="r", version="1", available_slots={},
                 images=[], kernels=[])))


def test_duplicate_message_type_is_refused() -> None:
    proto = Protocol("test", 1)

    @proto.message("x")
    class X(Message):
        a: int

    with pytest.raises(TypeError):
        @proto.message("x")
        class Y(Message):
            b: int


def test_messages_are_frozen() -> None:
    msg = RunQuery(run_id="r", code="c")
    with pytest.raises(AttributeError):
        msg.code = "other"  # type: ignore[misc]
