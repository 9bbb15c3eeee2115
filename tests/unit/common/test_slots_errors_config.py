from __future__ import annotations

from decimal import Decimal

import pydantic
import pytest

from common.config import ConfigError, load_config
from common.errors import (
    AgentError,
    ImageNotFound,
    KernelNotFound,
    KrakenError,
    MalformedJSON,
    error_from_wire,
)
from common.logging import redact
from common.slots import ResourceSlot, parse_bytes
from common.status import SessionStatus, can_transition


def test_slot_arithmetic_is_exact() -> None:
    total = ResourceSlot({"cpu": 4, "mem": 8 * 2**30})
    used = ResourceSlot()
    for _ in range(10):
        used = used + {"cpu": "0.1"}
    assert used["cpu"] == Decimal("1.0")
    left = total - used
    assert left["cpu"] == Decimal("3.0") and left.is_nonnegative()
    assert ResourceSlot({"cpu": 3}).fits_in(left)
    assert not ResourceSlot({"cpu": "3.1"}).fits_in(left)
    assert not ResourceSlot({"cuda.device": 1}).fits_in(left)
    assert ResourceSlot.from_wire(left.to_wire()) == left


@pytest.mark.parametrize("text,expected", [
    ("128m", 128 * 2**20), ("2g", 2 * 2**30), ("1.5GiB", 3 * 2**29), ("512", 512), ("64kb", 65536),
])
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


def test_parse_bytes_rejects_unknown_units() -> None:
    with pytest.raises(ValueError):
        parse_bytes("12q")


def test_problem_body_and_wire_roundtrip() -> None:
    err = KernelNotFound("no kernel abc")
    body = err.to_problem()
    assert body["type"].endswith("/kernel-not-found") and body["detail"] == "no kernel abc"
    assert err.status == 404
    assert isinstance(error_from_wire("image-not-found", "x"), ImageNotFound)
    assert isinstance(error_from_wire("malformed-json", None), MalformedJSON)
    assert type(error_from_wire("made-up", "x")) is AgentError


def test_every_error_slug_is_unique() -> None:
    seen: dict[str, type] = {}
    stack: list[type[KrakenError]] = [KrakenError]
    while stack:
        cls = stack.pop()
        assert cls.slug not in seen, f"{cls} and {seen.get(cls.slug)} share a slug"
        seen[cls.slug] = cls
        stack.extend(cls.__subclasses__())


def test_transitions() -> None:
    assert can_transition(SessionStatus.PENDING, SessionStatus.SCHEDULED)
    assert not can_transition(SessionStatus.TERMINATED, SessionStatus.RUNNING)
    assert not can_transition(SessionStatus.PENDING, SessionStatus.RUNNING)
    assert SessionStatus.ERROR.is_final and not SessionStatus.RUNNING.is_final


class _Inner(pydantic.BaseModel):
    url: str = "x"
    port: int = 1


class _Cfg(pydantic.BaseModel):
    name: str = "a"
    db: _Inner = _Inner()


def test_config_file_then_env(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "c.toml"
    f.write_text('name = "file"\n[db]\nurl = "from-file"\n')
    cfg = load_config(_Cfg, f, "KRAKEN_T", {"KRAKEN_T__DB__PORT": "99"})
    assert (cfg.name, cfg.db.url, cfg.db.port) == ("file", "from-file", 99)


def test_config_errors_are_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="db.port"):
        load_config(_Cfg, None, "KRAKEN_T", {"KRAKEN_T__DB__PORT": '"nope"'})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(_Cfg, tmp_path / "missing.toml", "KRAKEN_T", {})


def test_redaction_masks_secrets() -> None:
    text = redact("secret_key=abc123 token: 'xyz' credential=AKIAX:deadbeef ok=1")
    assert "abc123" not in text and "xyz" not in text and "deadbeef" not in text
    assert "ok=1" in text
