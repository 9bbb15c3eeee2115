"""``kraken-agent`` / ``python -m agent``: load the config and run the agent daemon."""
from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from agent.config import AgentConfig, load_agent_config
from agent.docker_backend import DockerBackend
from agent.identity import check_session_ids
from agent.server import Agent
from common.config import ConfigError
from common.errors import KrakenError
from common.filemodes import warn_if_loose
from common.logging import setup_logging

log = logging.getLogger("agent")


async def serve(cfg: AgentConfig) -> None:
    """Run until SIGINT/SIGTERM; containers keep running for the next start."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    agent = Agent(cfg, DockerBackend())
    try:
        await agent.start()
        log.info("agent %s serving %d manager endpoint(s)", cfg.agent_id,
                 len(cfg.manager.endpoints))
        await stop.wait()
    finally:
        await agent.stop()


@click.command()
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path),
              default=None, help="agent TOML config (env KRAKEN_AGENT__* overrides)")
def main(config_path: Path | None) -> None:
    """Run the Kraken agent."""
    try:
        cfg = load_agent_config(config_path)
        cfg.manager.token()
        cfg.manager.server_public_key()
        check_session_ids(cfg.jail.uid, cfg.jail.gid)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    setup_logging(cfg.logging.level, cfg.logging.file)
    warn_if_loose(config_path, cfg.manager.join_token_file)
    try:
        asyncio.run(serve(cfg))
    except KrakenError as e:
        raise click.ClickException(f"agent stopped: {e}") from None
