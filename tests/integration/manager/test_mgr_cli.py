"""The manager CLI against the test database: keypairs, link keys, bad input."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from manager.cli import main


@pytest.fixture(autouse=True)
def secrets_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "secretbox.key"
    assert CliRunner().invoke(main, ["gen-secrets-key", str(path)]).exit_code == 0
    monkeypatch.setenv("KRAKEN_MANAGER__SECRETS__KEY_FILE", str(path))
    return path


def _run(db_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"KRAKEN_MANAGER__DB__URL": db_url})
    return result.exit_code, result.output


def test_keypair_create_is_idempotent_with_same_secret(mgr_db_url: str) -> None:
    args = ("keypair", "create", "--access-key", "AKIACLITEST01", "--secret-key",
            "cli-secret-123", "--shell")
    code, out = _run(mgr_db_url, "init-db")
    assert code == 0 and "up to date" in out
    code, out = _run(mgr_db_url, *args)
    assert code == 0
    assert "export BACKEND_ACCESS_KEY=AKIACLITEST01" in out
    assert "export BACKEND_SECRET_KEY=cli-secret-123" in out
    assert _run(mgr_db_url, *args)[0] == 0
    code, out = _run(mgr_db_url, "keypair", "create", "--access-key", "AKIACLITEST01",
                     "--secret-key", "another-secret")
    assert code != 0 and "different secret" in out
    code, out = _run(mgr_db_url, "keypair", "list")
    assert code == 0 and "AKIACLITEST01" in out and "cli-secret-123" not in out


def test_gen_link_keys_and_bad_config(tmp_path: Path, mgr_db_url: str) -> None:
    code, _ = _run(mgr_db_url, "gen-link-keys", str(tmp_path / "k"))
    assert code == 0
    secret = tmp_path / "k" / "manager.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len((tmp_path / "k" / "manager.key").read_text().strip()) == 40
    bad = tmp_path / "bad.toml"
    bad.write_text("[api]\nport = 'eighty'\n")
    code, out = _run(mgr_db_url, "init-db", "-c", str(bad))
    assert code != 0 and "api.port" in out
    code, out = _run("postgresql://nobody:x@127.0.0.1:1/none", "init-db")
    assert code != 0 and "database error" in out
