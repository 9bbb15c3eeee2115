"""``python -m manager queue list|move|cancel``: the PENDING queue for operators.

``move`` and ``cancel`` act on the database and announce the change on the event bus,
so a running manager places (or answers the waiting create) at once.
"""
from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import click

from manager.config import ManagerConfig
from manager.events import EventBus
from manager.services.queue import QueueService, list_queue


def add_commands(main: click.Group, config_option: Any,
                 load: Callable[[str | None], ManagerConfig],
                 run_db: Callable[[ManagerConfig, Callable[[Any], Awaitable[Any]]], Any]
                 ) -> None:
    @main.group()
    def queue() -> None:
        """View, reorder and cancel queued (PENDING) sessions."""

    @queue.command("list")
    @config_option
    @click.option("--group", default=None, help="only this agent group")
    def queue_list(config_path: str | None, group: str | None) -> None:
        """Queued sessions in placement order (position per agent group)."""
        async def job(engine: Any) -> list[Any]:
            async with engine.connect() as conn:
                return await list_queue(conn, group)

        for e in run_db(load(config_path), job):
            deadline = e.deadline.isoformat() if e.deadline else "-"
            click.echo(f"{e.group}\t{e.position}\t{e.kernel_id}\t{e.access_key}\t"
                       f"{e.session_name}\tpriority={e.priority}\t"
                       f"queued={e.queued_at.isoformat()}\tdeadline={deadline}")

    @queue.command("move")
    @config_option
    @click.argument("kernel_id", type=click.UUID)
    @click.option("--priority", type=int, default=None, help="larger goes first")
    @click.option("--front", is_flag=True, help="ahead of every other queued session")
    def queue_move(config_path: str | None, kernel_id: uuid.UUID, priority: int | None,
                   front: bool) -> None:
        """Set a queued session's priority, or move it to the front."""
        if (priority is None) == (not front):
            raise click.UsageError("give exactly one of --priority, --front")
        config = load(config_path)
        done = run_db(config, lambda engine: _with_queue(
            config, engine, lambda q: q.move(kernel_id, priority, front)))
        if not done:
            raise click.ClickException(f"{kernel_id} is not queued")
        click.echo(f"moved {kernel_id}")

    @queue.command("cancel")
    @config_option
    @click.argument("kernel_id", type=click.UUID)
    def queue_cancel(config_path: str | None, kernel_id: uuid.UUID) -> None:
        """Cancel a queued session (reason cancelled-by-admin)."""
        config = load(config_path)
        done = run_db(config, lambda engine: _with_queue(
            config, engine, lambda q: q.cancel(kernel_id)))
        if not done:
            raise click.ClickException(f"{kernel_id} is not queued")
        click.echo(f"cancelled {kernel_id}")


async def _with_queue(config: ManagerConfig, engine: Any,
                      job: Callable[[QueueService], Awaitable[bool]]) -> bool:
    events = await EventBus.connect(config.redis.url)
    try:
        queue = QueueService(config.scheduler, engine, events, lambda _a: False, _never)
        return await job(queue)
    finally:
        await events.close()


async def _never(kernel_id: uuid.UUID) -> None:
    raise AssertionError(f"the CLI never places sessions ({kernel_id})")
