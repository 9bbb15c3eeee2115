"""Pure rules of presets, groups and resource policies: validation of what an admin
writes, the concurrent-session limit, and the create body's new fields."""
from __future__ import annotations

import pytest

from agent.config import AgentConfig
from common.errors import InvalidAPIParameters, QuotaExceeded
from manager.api.schemas import parse_create
from manager.graphql.cluster_writes import group_values, policy_values, slot_map
from manager.services.policies import ResourcePolicy, check_sessions


def test_slot_map_normalises_amounts() -> None:
    assert slot_map({"cpu": 0.50, "mem": "1g", "cuda.device": "1"}, "x",
                    allow_empty=False) == {"cpu": "0.5", "mem": str(2**30), "cuda.device": "1"}
    assert slot_map({}, "x", allow_empty=True) == {}


@pytest.mark.parametrize("bad", [{"cpu": 0}, {"cpu": "nan"}, {"cpu": True}, {"cpu": None},
                                 {"Cpu": 1}, {"mem": "12 parsecs"}, {"cpu": "1e30"},
                                 ["cpu"], {f"s{i}": 1 for i in range(17)}])
def test_slot_map_refuses(bad: object) -> None:
    with pytest.raises(InvalidAPIParameters):
        slot_map(bad, "resource_slots", allow_empty=True)


def test_policy_and_group_values() -> None:
    assert policy_values({"max_concurrent_sessions": 3, "allowed_groups": ["a", "b", "a"],
                          "idle_timeout": None}) == {"max_concurrent_sessions": 3,
                                                     "allowed_groups": ["a", "b"]}
    with pytest.raises(InvalidAPIParameters, match="idle_timeout must be between"):
        policy_values({"idle_timeout": -5})
    with pytest.raises(InvalidAPIParameters, match="group name"):
        policy_values({"allowed_groups": ["no spaces"]})
    assert group_values({"scheduler": "drf", "is_active": False}) == {
        "scheduler": "drf", "is_active": False}
    with pytest.raises(InvalidAPIParameters, match="scheduler"):
        group_values({"scheduler": "lifo"})


def test_concurrent_session_limit() -> None:
    check_sessions(ResourcePolicy("p", max_concurrent_sessions=0), 1000)  # 0: none
    check_sessions(ResourcePolicy("p", max_concurrent_sessions=2), 1)
    with pytest.raises(QuotaExceeded, match="'p' allows at most 2 concurrent sessions"):
        check_sessions(ResourcePolicy("p", max_concurrent_sessions=2), 2)


def test_create_body_names_group_and_preset() -> None:
    spec = parse_create({"lang": "python", "clientSessionToken": "tok-1",
                         "config": {"scalingGroup": "gpu", "resourcePreset": "small"}})
    assert (spec.group, spec.preset) == ("gpu", "small")
    plain = parse_create({"lang": "python", "clientSessionToken": "tok-1"})
    assert (plain.group, plain.preset) == (None, None)
    with pytest.raises(InvalidAPIParameters, match="scalingGroup"):
        parse_create({"lang": "python", "clientSessionToken": "tok-1",
                      "config": {"scalingGroup": "../x"}})


def test_agent_config_group() -> None:
    link = {"endpoints": ["tcp://127.0.0.1:1"], "join_token": "t"}
    assert AgentConfig.model_validate({"manager": link}).group == "default"
    assert AgentConfig.model_validate({"manager": link, "group": "gpu-1"}).group == "gpu-1"
    with pytest.raises(ValueError, match="group"):
        AgentConfig.model_validate({"manager": link, "group": "a b"})
