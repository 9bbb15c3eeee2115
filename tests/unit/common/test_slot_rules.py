"""The slot rules both the manager and the agent size sessions with (common/slots.py),
and the other rules defined once in common/: live statuses and stats keys."""
from __future__ import annotations

from decimal import Decimal

import pytest

from agent.stats import stats_from_docker
from common.errors import InvalidAPIParameters, InvalidImageLabel
from common.slots import GPU, ResourceSlot, assign_gpus, gpu_amount, granted_slots
from common.stats import STAT_KEYS
from common.status import FINAL_STATUSES, LIVE_STATUS_VALUES, SessionStatus
from manager.db import tables

D = Decimal
GIB = 2**30


def test_request_is_defaulted_then_capped_by_the_image() -> None:
    labels = {"ai.backend.maxcores": "4", "ai.backend.maxmem": "2g"}
    assert granted_slots({}, labels, default_cpu=1, default_mem=GIB) == {"cpu": 1, "mem": GIB}
    assert granted_slots({"cpu": 8, "mem": 8 * GIB}, labels) == {"cpu": 4, "mem": 2 * GIB}
    assert granted_slots({"cpu": "0.25", "mem": "64m"}, labels) == \
        {"cpu": D("0.25"), "mem": 64 << 20}


def test_minimum_labels_raise_a_small_request() -> None:
    labels = {"ai.backend.resource.min.cpu": "0.5", "ai.backend.resource.min.mem": "256m"}
    assert granted_slots({"cpu": "0.1", "mem": "64m"}, labels) == \
        {"cpu": D("0.5"), "mem": 256 << 20}


@pytest.mark.parametrize("labels", [
    {"ai.backend.resource.min.cpu": "abc"},
    {"ai.backend.maxcores": "abc"},
    {"ai.backend.maxcores": "-1"},
    {"ai.backend.maxmem": "junk"},
    {"ai.backend.maxmem": "0"},
    {"ai.backend.resource.min.mem": "1q"},
    {"ai.backend.resource.min.cpu": "4", "ai.backend.maxcores": "2"},
])
def test_a_bad_image_label_is_an_invalid_image_label_error(labels: dict[str, str]) -> None:
    with pytest.raises(InvalidImageLabel) as err:
        granted_slots({"cpu": 1, "mem": GIB}, labels)
    assert err.value.slug == "invalid-image-label"
    assert next(iter(labels)) in err.value.detail or "exceeds" in err.value.detail


@pytest.mark.parametrize("request_", [
    {"cpu": "x"}, {"cpu": "-1"}, {"cpu": "NaN"}, {"cpu": 0}, {"mem": "12q"}, {"mem": True},
    {"tpu": 1}, {GPU: "1.5"}, {GPU: "0.001"},
])
def test_a_bad_request_is_invalid_api_parameters(request_: dict[str, object]) -> None:
    with pytest.raises(InvalidAPIParameters):
        granted_slots(request_, {})


def test_gpu_amounts_are_whole_devices_or_one_fraction_of_a_device() -> None:
    assert gpu_amount("0.5") == D("0.5") and gpu_amount(2) == 2 and gpu_amount(0) == 0
    assert granted_slots({"cuda.device": "0.25"}, {}).get_amount(GPU) == D("0.25")
    assert "cuda.device" not in granted_slots({"cuda.device": "1"}, {})


def test_gpu_shares_map_to_devices_best_fit_then_lowest_index() -> None:
    assert assign_gpus([D(1), D(1)], D("0.5")) == (0,)
    # a fraction goes to the fullest device that still holds it
    assert assign_gpus([D(1), D("0.5")], D("0.25")) == (1,)
    assert assign_gpus([D("0.5"), D("0.5")], D("0.5")) == (0,)
    assert assign_gpus([D("0.25"), D("0.5")], D("0.5")) == (1,)
    # whole devices need entirely free ones, lowest first
    assert assign_gpus([D("0.5"), D(1), D(1)], D(2)) == (1, 2)
    assert assign_gpus([D("0.5"), D(1)], D(2)) is None
    assert assign_gpus([D("0.4"), D("0.4")], D("0.5")) is None
    assert assign_gpus([], D(0)) == ()


def test_legacy_gpu_name_and_stored_junk() -> None:
    slots = ResourceSlot.from_wire({"cpu": "1", "cuda.device": "0.5", "mem": "junk"})
    assert slots == {"cpu": 1, GPU: D("0.5")}
    assert slots.as_floats() == {"cpu": 1.0, GPU: 0.5}


def test_live_statuses_are_one_set_used_by_the_schema() -> None:
    assert set(LIVE_STATUS_VALUES) == {s.value for s in SessionStatus} - FINAL_STATUSES
    assert "RUNNING" in LIVE_STATUS_VALUES and "PENDING" in LIVE_STATUS_VALUES
    assert tables.LIVE_STATUS_SQL == \
        "status IN (" + ", ".join(f"'{s}'" for s in LIVE_STATUS_VALUES) + ")"


def test_agent_stats_carry_exactly_the_common_keys() -> None:
    out = stats_from_docker({"memory_stats": {"usage": 5}})
    assert tuple(out) == STAT_KEYS and out["mem_cur_bytes"] == 5


def test_amounts_travel_in_their_shortest_form() -> None:
    assert granted_slots({"cpu": 1.0, "mem": 2.0 * GIB, GPU: 0.50}, {}).to_wire() == \
        {"cpu": "1", "mem": str(2 * GIB), GPU: "0.5"}
    assert ResourceSlot({"cpu": D(2) * D("100.0")}).to_wire() == {"cpu": "200"}
