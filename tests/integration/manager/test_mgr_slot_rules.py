"""The manager sizes a session with the agent's rule (common/slots.py): image labels,
bad labels, fractional GPU shares; against PostgreSQL and a fake agent on the real link."""
from __future__ import annotations

from typing import Any

from common.slots import ResourceSlot, granted_slots

MIB = 2**20


async def _agent(harness: Any, labels: dict[str, str], **slots: str) -> Any:
    fake = harness.fake_agent(cpu="200", mem=str(16 * 2**30))
    fake.images[0]["labels"] = labels
    fake.slots.update(slots)
    await fake.start()
    return fake


async def test_the_agent_is_asked_for_what_its_own_rule_grants(harness: Any) -> None:
    labels = {"ai.backend.maxcores": "2", "ai.backend.resource.min.mem": "256m"}
    agent = await _agent(harness, labels)
    status, _ = await harness.create("sized", instanceCores=8, instanceMemory=0.125)
    assert status == 201
    (msg,) = agent.created
    assert ResourceSlot.from_wire(msg.slots) == {"cpu": 2, "mem": 256 * MIB}
    assert granted_slots(msg.slots, labels) == ResourceSlot.from_wire(msg.slots)


async def test_a_bad_image_label_is_refused_before_any_agent_is_asked(harness: Any) -> None:
    agent = await _agent(harness, {"ai.backend.resource.min.cpu": "abc"})
    status, body = await harness.create("bad-label")
    assert status == 500 and body["type"].endswith("invalid-image-label")
    assert "ai.backend.resource.min.cpu" in body["detail"]
    assert agent.created == [] and await harness.sessions() == []


async def test_fractional_gpu_shares_are_admitted_by_their_sum(harness: Any) -> None:
    agent = await _agent(harness, {}, **{"cuda.shares": "1"})
    status, body = await harness.create("gpu-1", instanceGPUs=0.5)
    assert status == 201, body
    assert (await harness.create("gpu-2", instanceGPUs=0.5))[0] == 201
    status, body = await harness.call("POST", "/kernel/create", {  # the device is full
        "lang": "python", "clientSessionToken": "gpu-3", "config": {"instanceGPUs": 0.5},
        "maxWaitSeconds": 0.2})
    assert status == 503 and body["type"].endswith("session-queue-timeout"), body
    assert [m.slots["cuda.shares"] for m in agent.created] == ["0.5", "0.5"]
    status, body = await harness.create("gpu-4", instanceGPUs=1.5)
    assert status == 400 and "cuda.shares" in body["detail"]
