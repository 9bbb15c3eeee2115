"""The session uid/gid check and the scratch size rules (agent config, image label)."""
from __future__ import annotations

import dataclasses
import grp
import pwd
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.identity import check_session_ids
from agent.spec import SpecContext, build_container_config, scratch_size
from common.config import ConfigError
from common.errors import InvalidImageLabel
from common.msg_agent import CreateKernel
from common.slots import granted_slots
from jail.policy import KERNEL_GID, KERNEL_UID

FREE = KERNEL_UID
NO_SUBIDS = Path("/nonexistent/subid")


def test_default_ids_are_free_on_this_host() -> None:
    check_session_ids(KERNEL_UID, KERNEL_GID)


def test_an_id_of_a_host_account_or_group_is_refused() -> None:
    user = next(p for p in pwd.getpwall() if p.pw_uid > 0)
    with pytest.raises(ConfigError, match=f"host account '{user.pw_name}'") as e:
        check_session_ids(user.pw_uid, FREE, NO_SUBIDS, NO_SUBIDS)
    assert "\n" not in str(e.value)
    group = next(g for g in grp.getgrall() if g.gr_gid > 0)
    with pytest.raises(ConfigError, match=f"host group '{group.gr_name}'"):
        check_session_ids(FREE, group.gr_gid, NO_SUBIDS, NO_SUBIDS)


def test_an_id_inside_a_subordinate_range_is_refused(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("# comment\nbroken line\nalice:100000:65536\nbob:1999990000:65536\n")
    with pytest.raises(ConfigError, match="'bob'.s subordinate id range"):
        check_session_ids(FREE, FREE, subuid, NO_SUBIDS)
    check_session_ids(1999990000 + 65536, FREE, subuid, NO_SUBIDS)  # just past the range
    with pytest.raises(ConfigError, match="jail.gid"):
        check_session_ids(FREE, FREE, NO_SUBIDS, subuid)


def _cfg(**over: object) -> AgentConfig:
    data: dict[str, object] = {"manager": {"endpoints": ["tcp://m:5020"], "join_token": "t"}}
    data.update(over)
    return AgentConfig.model_validate(data)


def test_config_defaults_and_bounds() -> None:
    cfg = _cfg()
    assert (cfg.jail.uid, cfg.jail.gid) == (KERNEL_UID, KERNEL_GID)
    assert cfg.scratch.quota == "loop" and cfg.scratch.default_size == 1 << 30
    assert cfg.scratch.max_size == 10 << 30 and cfg.scratch.preallocate is False
    cfg = _cfg(scratch={"default_size": "256m", "max_size": "2g", "quota": "none"})
    assert (cfg.scratch.default_size, cfg.scratch.max_size) == (256 << 20, 2 << 30)
    for bad in ({"jail": {"uid": 0}}, {"jail": {"gid": -1}}, {"jail": {"uid": 1 << 32}},
                {"scratch": {"quota": "xfs"}}, {"scratch": {"default_size": "1m"}},
                {"scratch": {"default_size": "4g", "max_size": "2g"}}):
        with pytest.raises(ValueError):
            _cfg(**bad)


def test_scratch_size_comes_from_the_label_capped_by_the_maximum() -> None:
    assert scratch_size({}, 1 << 30, 8 << 30) == 1 << 30
    assert scratch_size({"kraken.scratch.size": "4g"}, 1 << 30, 8 << 30) == 4 << 30
    assert scratch_size({"kraken.scratch.size": "64g"}, 1 << 30, 8 << 30) == 8 << 30
    for bad in ("lots", "0", "-1g"):
        with pytest.raises(InvalidImageLabel, match="kraken.scratch.size"):
            scratch_size({"kraken.scratch.size": bad}, 1 << 30, 8 << 30)


def test_container_runs_as_the_configured_ids() -> None:
    req = CreateKernel(kernel_id="5b0b8e4e-8c0a-4a4c-9d0e-0c6d7d5d3a11", session_name="s",
                       access_key="AKIATEST", image="kraken/python:latest",
                       slots={"cpu": "1", "mem": "1g"}, environ={})
    ctx = SpecContext(agent_id="a", network="n", scratch_dir=Path("/s"))
    ctx = dataclasses.replace(ctx, uid=1_900_000_123, gid=1_900_000_456)
    cfg = build_container_config(req, {}, granted_slots(req.slots, {}), [], ctx)
    assert cfg["User"] == "1900000123:1900000456"
