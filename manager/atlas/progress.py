"""Job progress across replicas: the driver (any replica) publishes each message on one
Redis channel; every replica's hub hands it to its own WebSockets of that account and
clientId (seed 001). A socket's queue is bounded: a client too slow to drain it is
dropped, so memory never grows with it."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
CHANNEL = "atlas:progress"


def progress_message(job_id: str, stage: str, percent: float,
                     message: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "progress", "details": f"{stage} {percent:g}%",
                           "requestId": job_id, "stage": stage, "percent": percent}
    if message:
        out["message"] = message
    return out


def final_message(job_id: str, status: str, error: str | None) -> dict[str, Any]:
    if status == "OK":
        return {"status": "progress", "details": "done 100%", "requestId": job_id,
                "stage": "done", "percent": 100, "result": "OK"}
    return {"status": "error", "details": error or "the job failed", "requestId": job_id,
            "result": "NG"}


async def publish(redis: Redis, account_id: uuid.UUID, client_id: str | None,
                  body: dict[str, Any]) -> None:
    """Best effort: a Redis hiccup loses a progress line, never the job."""
    if not client_id:
        return
    envelope = {"account": account_id.hex, "client": client_id, "body": body}
    try:
        await redis.publish(CHANNEL, orjson.dumps(envelope))
    except (RedisError, OSError) as e:
        log.info("progress of %s not published: %s", body.get("requestId"), e)


@dataclass(eq=False)
class Listener:
    account: str
    client: str
    queue: asyncio.Queue[dict[str, Any]]
    dropped: asyncio.Event = field(default_factory=asyncio.Event)


class ProgressHub:
    """One per process: one Redis subscription, fanned out to local sockets."""

    def __init__(self, redis: Redis, queue_size: int) -> None:
        self._redis = redis
        self._size = queue_size
        self._listeners: dict[tuple[str, str], set[Listener]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._follow())

    async def close(self) -> None:
        """Stop following; also when a library swallowed the cancellation, the loop sees
        the flag within a second."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5.0)

    @contextlib.contextmanager
    def listen(self, account_id: uuid.UUID, client_id: str) -> Iterator[Listener]:
        key = (account_id.hex, client_id)
        listener = Listener(*key, asyncio.Queue(self._size))
        self._listeners.setdefault(key, set()).add(listener)
        try:
            yield listener
        finally:
            group = self._listeners.get(key, set())
            group.discard(listener)
            if not group:
                self._listeners.pop(key, None)

    def dispatch(self, envelope: dict[str, Any]) -> None:
        key = (str(envelope.get("account")), str(envelope.get("client")))
        body = envelope.get("body")
        if not isinstance(body, dict):
            return
        for listener in list(self._listeners.get(key, ())):
            try:
                listener.queue.put_nowait(body)
            except asyncio.QueueFull:
                listener.dropped.set()

    async def _follow(self) -> None:
        while not self._closed:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    while not self._closed:
                        message = await pubsub.get_message(timeout=1.0)
                        if isinstance(message, dict) and message.get("type") == "message":
                            with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                                envelope = orjson.loads(message["data"])
                                if isinstance(envelope, dict):
                                    self.dispatch(envelope)
            except (RedisError, OSError) as e:
                log.info("progress subscription lost (%s); subscribing again", e)
            if not self._closed:
                await asyncio.sleep(1.0)
