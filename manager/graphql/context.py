"""What every resolver receives as ``info.context``."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from manager.graphql.loaders import Loaders
from manager.graphql.pacing import Pacer
from manager.secretbox import SecretBox
from manager.services.keypairs import KeypairInfo
from manager.services.queue import QueueService


@dataclass(frozen=True, slots=True)
class GqlContext:
    engine: AsyncEngine
    caller: KeypairInfo
    loaders: Loaders
    pacer: Pacer
    box: SecretBox | None = None  # seals the secrets of keypairs created by mutations
    queue: QueueService | None = None  # the queue mutations act through it

    @classmethod
    def create(cls, engine: AsyncEngine, caller: KeypairInfo,
               box: SecretBox | None = None, queue: QueueService | None = None
               ) -> GqlContext:
        pacer = Pacer()
        return cls(engine, caller, Loaders.create(engine, pacer), pacer, box, queue)
