"""Admin node views (seed 002): connected nodes, and choose-host's dry-run placement."""
from __future__ import annotations

from typing import Any

from manager.api.keys import REGISTRY

GIB = 2**30


async def _admin(harness: Any) -> tuple[str, str]:
    return await harness.keypair(is_admin=True)


async def test_nodes_list_state_load_and_kernels(harness: Any) -> None:
    admin = await _admin(harness)
    await harness.agent("agent-a", cpu="2", mem=str(2 * GIB))
    assert (await harness.create("sess-one", instanceCores=1, instanceMemory=1))[0] == 201
    status, body = await harness.call("GET", "/admin/nodes", keys=admin)
    assert status == 200, body
    (node,) = body["nodes"]
    assert (node["id"], node["status"], node["connected"]) == ("agent-a", "ALIVE", True)
    assert node["kernels"] == 1 and node["version"] == "0"
    assert node["available_slots"] == {"cpu": 2.0, "mem": 2.0 * GIB}
    assert node["occupied_slots"] == {"cpu": 1.0, "mem": 1.0 * GIB}
    assert node["free_slots"] == {"cpu": 1.0, "mem": 1.0 * GIB}
    assert node["last_heartbeat"] is not None
    status, body = await harness.call("GET", "/admin/nodes")  # not an admin
    assert status == 403, body


async def test_choose_host_explains_every_agent(harness: Any) -> None:
    admin = await _admin(harness)
    await harness.agent("agent-big", cpu="8", mem=str(16 * GIB))
    await harness.agent("agent-noimage", images=["other/image:1"])
    await harness.agent("agent-small", cpu="2", mem=str(2 * GIB))
    assert (await harness.create("sess-fill", instanceCores=1, instanceMemory=1.5))[0] == 201
    # the fill went to the best fit, agent-small; 2 GiB no longer fit there
    ask = {"lang": "python", "config": {"instanceCores": 1, "instanceMemory": 2}}
    status, body = await harness.call("POST", "/admin/choose-host", ask, keys=admin)
    assert status == 200, body
    assert body["chosen"] == "agent-big" and body["image"] == "kraken/python:latest"
    why = {a["agent_id"]: a for a in body["agents"]}
    assert why["agent-big"]["chosen"] and why["agent-big"]["fits"]
    assert why["agent-noimage"]["reasons"] == [
        "image kraken/python:latest is not installed"]
    assert why["agent-small"]["reasons"] == [
        "not enough mem: wants 2048 MiB, 512 MiB of 2048 MiB free"]
    # a dry run: nothing was created or reserved
    assert [r.session_name for r in await harness.sessions()] == ["sess-fill"]
    small = {"lang": "python", "config": {"instanceCores": 1, "instanceMemory": 0.25}}
    status, body = await harness.call("POST", "/admin/choose-host", small, keys=admin)
    assert body["chosen"] == "agent-small", body
    assert "fits, but agent-small is the better fit" in \
        {a["agent_id"]: a for a in body["agents"]}["agent-big"]["reasons"]


async def test_choose_host_names_silent_agents(harness: Any) -> None:
    admin = await _admin(harness)
    agent = await harness.agent("agent-a")
    agent.stop_heartbeats()
    harness.app[REGISTRY]._heard.pop("agent-a")  # as if silent past the timeout
    status, body = await harness.call("POST", "/admin/choose-host", {"lang": "python"},
                                      keys=admin)
    assert status == 200 and body["chosen"] is None, body
    assert body["agents"][0]["reasons"] == ["not connected to this manager replica"]
    assert agent.created == []

