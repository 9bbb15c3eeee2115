"""Manager config defaults, validation and the link-key requirement."""
from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError
from manager import linkkeys
from manager.config import LinkConfig, ManagerConfig, load_manager_config


def test_defaults_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[db]\nurl = "postgresql://u:p@h/db"\n')
    monkeypatch.setenv("KRAKEN_MANAGER__API__PORT", "9000")
    config = load_manager_config(path)
    assert config.api.port == 9000 and config.api.host == "127.0.0.1"
    assert config.db.url == "postgresql+asyncpg://u:p@h/db"
    assert config.link.bind == "tcp://127.0.0.1:5020"
    assert config.sessions.default_mem_bytes == 2**30


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError):
        ManagerConfig.model_validate({"db": {"url": "mysql://x"}})
    with pytest.raises(ValueError):
        ManagerConfig.model_validate({"sessions": {"default_mem": "1q"}})
    with pytest.raises(ValueError):
        ManagerConfig.model_validate({"link": {"heartbeat_timeout": 0}})


def test_link_keys_are_required_unless_insecure(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gen-link-keys"):
        linkkeys.load(LinkConfig())
    assert linkkeys.load(LinkConfig(insecure=True)) == (None, None)
    pub, sec = linkkeys.generate(tmp_path)
    secret, public = linkkeys.load(LinkConfig(secret_key_file=sec, public_key_file=pub))
    assert secret is not None and public is not None and len(secret) == 40
    pub.write_text("short")
    with pytest.raises(ConfigError, match="z85"):
        linkkeys.load(LinkConfig(secret_key_file=sec, public_key_file=pub))


def test_join_token_from_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-123\n")
    assert LinkConfig(join_token_file=token_file).read_join_token() == "tok-123"
    with pytest.raises(ValueError):
        LinkConfig().read_join_token()


def test_the_response_cap_is_a_size() -> None:
    assert ManagerConfig().exec.max_response == 16 << 20
    assert ManagerConfig.model_validate({"exec": {"max_response": "2m"}}).exec.max_response == 2 << 20
    for bad in ("0", "lots", True):
        with pytest.raises(ValueError):
            ManagerConfig.model_validate({"exec": {"max_response": bad}})
