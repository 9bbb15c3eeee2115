"""What every resolver receives as ``info.context``."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from manager.graphql.loaders import Loaders
from manager.services.keypairs import KeypairInfo


@dataclass(frozen=True, slots=True)
class GqlContext:
    engine: AsyncEngine
    caller: KeypairInfo
    loaders: Loaders

    @classmethod
    def create(cls, engine: AsyncEngine, caller: KeypairInfo) -> GqlContext:
        return cls(engine, caller, Loaders.create(engine))
