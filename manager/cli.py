"""``python -m manager``: init-db, keypair create/list, gen-link-keys, gen-secrets-key,
gen-atlas-key, queue list/move/cancel (manager/cli_queue.py), serve.

Bad input or an unreachable service ends with one clear line and a non-zero exit.
The secret key is printed only by ``keypair create``.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from common.config import ConfigError
from common.errors import KrakenError
from common.filemodes import warn_if_loose
from common.logging import setup_logging
from manager import cli_queue, linkkeys, secretbox
from manager.config import ManagerConfig, load_manager_config
from manager.db.engine import make_engine
from manager.db.migrate import upgrade_head
from manager.services.keypairs import KeypairInfo, create_keypair, list_keypairs

T = TypeVar("T")
config_option = click.option("-c", "--config", "config_path", type=click.Path(),
                             default=None, help="manager.toml (env KRAKEN_MANAGER__* overrides)")


def _load(config_path: str | None) -> ManagerConfig:
    try:
        return load_manager_config(config_path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def _run_db(config: ManagerConfig, job: Callable[[Any], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = make_engine(config.db.url, pool_size=2)
        try:
            return await job(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except KrakenError as e:
        raise click.ClickException(str(e)) from None
    except (SQLAlchemyError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise click.ClickException(f"database error: {first}") from None


@click.group()
def main() -> None:
    """Kraken manager."""


@main.command("init-db")
@config_option
def init_db(config_path: str | None) -> None:
    """Create or upgrade the database schema (alembic upgrade head)."""
    _run_db(_load(config_path), upgrade_head)
    click.echo("database schema is up to date")


@main.group()
def keypair() -> None:
    """Manage API keypairs."""


@keypair.command("create")
@config_option
@click.option("--admin", is_flag=True, help="an admin keypair (sees every session)")
@click.option("--user-id", default="user@localhost", show_default=True)
@click.option("--access-key", default=None)
@click.option("--secret-key", default=None)
@click.option("--concurrency", type=click.IntRange(0, 10_000), default=5, show_default=True)
@click.option("--strict-signing", is_flag=True,
              help="accept only strict signing (nonce + body hash; docs/api.md)")
@click.option("--shell", is_flag=True, help="print `export BACKEND_*=...` lines")
def keypair_create(config_path: str | None, admin: bool, user_id: str, access_key: str | None,
                   secret_key: str | None, concurrency: int, strict_signing: bool,
                   shell: bool) -> None:
    """Create a keypair and print it (the only place a secret key is shown)."""
    if secret_key is not None and access_key is None:
        raise click.ClickException("--secret-key needs --access-key")
    config = _load(config_path)
    try:
        box = secretbox.load(config.secrets.key_file)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None

    async def job(engine: Any) -> KeypairInfo:
        return await create_keypair(engine, box=box, user_id=user_id, is_admin=admin,
                                    access_key=access_key, secret_key=secret_key,
                                    concurrency_limit=concurrency,
                                    strict_signing=strict_signing)

    info = _run_db(config, job)
    if shell:
        click.echo(f"export BACKEND_ACCESS_KEY={info.access_key}")
        click.echo(f"export BACKEND_SECRET_KEY={info.secret_key}")
    else:
        click.echo(f"access key: {info.access_key}")
        click.echo(f"secret key: {info.secret_key}")


@keypair.command("list")
@config_option
def keypair_list(config_path: str | None) -> None:
    """List keypairs (never their secrets)."""
    rows = _run_db(_load(config_path), list_keypairs)
    for r in rows:
        flags = ",".join(f for f, on in (("admin", r["is_admin"]),
                                         ("inactive", not r["is_active"]),
                                         ("strict", r["strict_signing"])) if on)
        click.echo(f"{r['access_key']}\t{r['user_id']}\tlimit={r['concurrency_limit']}"
                   f"\tqueries={r['num_queries']}\t{flags}")


@main.command("gen-link-keys")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def gen_link_keys(directory: Path) -> None:
    """Write a CurveZMQ keypair for the agent link into DIRECTORY."""
    try:
        public, secret = linkkeys.generate(directory)
    except OSError as e:
        raise click.ClickException(f"cannot write keys into {directory}: {e.strerror}") from None
    click.echo(f"public key: {public}\nsecret key: {secret} (mode 0600)")


@main.command("gen-secrets-key")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def gen_secrets_key(path: Path) -> None:
    """Write the key that encrypts keypair secrets at rest to PATH (mode 0600).

    Set it as secrets.key_file; losing it makes every keypair unusable."""
    try:
        secretbox.generate(path)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; refusing to replace a secrets key "
                                   "(the stored secrets need it)") from None
    except OSError as e:
        raise click.ClickException(f"cannot write {path}: {e.strerror}") from None
    click.echo(f"secrets key: {path} (mode 0600)")


@main.command("gen-atlas-key")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def gen_atlas_key(path: Path) -> None:
    """Write the key that signs atlas tokens and confirmation links to PATH (mode 0600).

    Set it as atlas.token_key_file; replacing it signs every atlas user out."""
    from manager.atlas import tokens

    try:
        tokens.generate(path)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; refusing to replace the atlas token "
                                   "key") from None
    except OSError as e:
        raise click.ClickException(f"cannot write {path}: {e.strerror}") from None
    click.echo(f"atlas token key: {path} (mode 0600)")


cli_queue.add_commands(main, config_option, _load, _run_db)


@main.command("serve")
@config_option
def serve(config_path: str | None) -> None:
    """Run the manager (REST API + agent link)."""
    config = _load(config_path)
    setup_logging(config.logging.level, config.logging.file)
    warn_if_loose(Path(config_path) if config_path else None)
    from manager.api.app import build_app

    try:
        web.run_app(build_app(config), host=config.api.host, port=config.api.port,
                    print=lambda _msg: None)
    except (ConfigError, KrakenError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot start: {e}") from None
