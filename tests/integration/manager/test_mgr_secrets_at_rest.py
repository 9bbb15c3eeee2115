"""Keypair secrets at rest: a database dump holds no secret key; plaintext rows from
before migration 0004 are sealed at the first start; without the right key file the
manager refuses to start instead of falling back to plaintext."""
from __future__ import annotations

import asyncio
import glob
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from manager import secretbox
from manager.api.app import build_app
from manager.cli import main
from manager.config import ManagerConfig
from tests.integration.manager.conftest import Harness, _truncate, make_manager_config
from tests.integration.manager.signing import signed_headers

ROOT = Path(__file__).resolve().parents[3]


def _pg(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _rows_as_text(url: str) -> str:
    conn = await asyncpg.connect(_pg(url))
    try:
        rows = await conn.fetch("SELECT row_to_json(k)::text AS r FROM keypairs k")
    finally:
        await conn.close()
    return "\n".join(r["r"] for r in rows)


def _pg_dump(url: str) -> str:
    """``pg_dump`` of the keypairs table, as an attacker with a backup would read it."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))
    assert found, "pg_dump is part of the PostgreSQL packages scripts/dev installs"
    out = subprocess.run([found[-1], "--data-only", "-t", "keypairs", _pg(url)],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


async def test_database_dump_holds_no_secret_key(harness: Harness) -> None:
    h = harness
    _access, secret = await h.keypair()
    url = str(h.engine.url.render_as_string(hide_password=False))
    for dump in (await _rows_as_text(url), _pg_dump(url)):
        assert _access in dump
        assert secret not in dump and h.secret_key not in dump
    # and the sealed keypair still signs
    status, _ = await h.call("POST", "/admin/graphql", {"query": "{ keypair { user_id } }"})
    assert status == 200


async def _insert_plaintext(url: str, access: str, secret: str) -> None:
    conn = await asyncpg.connect(_pg(url))
    try:
        await conn.execute("INSERT INTO keypairs (access_key, secret_key, user_id) "
                           "VALUES ($1, $2, 'legacy')", access, secret)
    finally:
        await conn.close()


async def test_plaintext_rows_are_sealed_at_first_start(mgr_config: ManagerConfig) -> None:
    await _truncate(mgr_config.db.url)
    access, secret = "AKIALEGACY0001", "legacy-plaintext-secret-0001"
    await _insert_plaintext(mgr_config.db.url, access, secret)
    async with TestClient(TestServer(build_app(mgr_config))) as client:
        assert secret not in await _rows_as_text(mgr_config.db.url)
        host = f"{client.host}:{client.port}"
        body = b'{"query": "{ keypair { user_id } }"}'
        resp = await client.post("/admin/graphql", data=body, headers=signed_headers(
            access, secret, "POST", "/admin/graphql", host))
        assert resp.status == 200 and (await resp.json())["keypair"]["user_id"] == "legacy"


def _serve(config_path: Path) -> tuple[int, str]:
    """``python -m manager serve`` as an operator runs it; it must stop by itself."""
    out = subprocess.run([sys.executable, "-m", "manager", "serve", "-c", str(config_path)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    return out.returncode, out.stdout + out.stderr


def _config_file(tmp_path: Path, config: ManagerConfig, key_file: str | None) -> Path:
    path = tmp_path / "manager.toml"
    secrets = f'[secrets]\nkey_file = "{key_file}"\n' if key_file else ""
    path.write_text(f'[api]\nport = 0\n[db]\nurl = "{config.db.url}"\n'
                    f'[redis]\nurl = "{config.redis.url}"\n{secrets}'
                    f'[link]\ninsecure = true\njoin_token = "x"\nbind = "tcp://127.0.0.1:*"\n')
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize("case", ["unset", "missing", "other-key"])
async def test_manager_refuses_to_start_without_its_secrets_key(
        harness: Harness, mgr_config: ManagerConfig, tmp_path: Path, case: str) -> None:
    await harness.keypair()  # the database now holds sealed secrets
    key_file: str | None = None
    if case == "missing":
        key_file = str(tmp_path / "nope.key")
    elif case == "other-key":
        key_file = str(secretbox.generate(tmp_path / "other.key"))
    code, out = await asyncio.to_thread(_serve, _config_file(tmp_path, mgr_config, key_file))
    assert code != 0
    expected = {"unset": "secrets.key_file is required", "missing": "cannot read the secrets",
                "other-key": "were encrypted with secrets key"}[case]
    assert expected in out
    assert "Traceback" not in out


def test_gen_secrets_key_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k" / "secretbox.key"
    assert CliRunner().invoke(main, ["gen-secrets-key", str(path)]).exit_code == 0
    assert (path.stat().st_mode & 0o777) == 0o600
    before = path.read_bytes()
    result = CliRunner().invoke(main, ["gen-secrets-key", str(path)])
    assert result.exit_code != 0 and "refusing to replace" in result.output
    assert path.read_bytes() == before
    secretbox.load(path)  # a well-formed key


async def test_upgrade_from_0003_seals_existing_secrets(tmp_path: Path) -> None:
    """A database made before migration 0004, with a plaintext keypair, upgraded and
    served: the secret is sealed and still signs; downgrading is refused."""
    from alembic import command

    from manager.db.engine import make_engine
    from manager.db.migrate import alembic_config, upgrade_head
    from tests.integration.manager.conftest import PG_URL

    name = f"kraken_test_mig_{os.urandom(4).hex()}"
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0003"))
        await _insert_plaintext(url, "AKIAOLDROW0001", "old-plaintext-secret-01")
        await upgrade_head(engine)
        config = make_manager_config(url, tmp_path)
        async with TestClient(TestServer(build_app(config))) as client:
            assert "old-plaintext-secret-01" not in await _rows_as_text(url)
            host = f"{client.host}:{client.port}"
            body = b'{"query": "{ keypair { user_id } }"}'
            resp = await client.post("/admin/graphql", data=body, headers=signed_headers(
                "AKIAOLDROW0001", "old-plaintext-secret-01", "POST", "/admin/graphql", host))
            assert resp.status == 200
        with pytest.raises(Exception, match="downgrade refused"):
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0003"))
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
