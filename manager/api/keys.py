"""Typed application keys for the services shared by handlers (STYLE 10)."""
from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from manager.config import ManagerConfig
from manager.events import EventBus
from manager.registry import AgentRegistry
from manager.services.control import SessionControl
from manager.services.files import SessionFiles
from manager.services.keypairs import KeypairStore
from manager.services.routes import QueryCounter
from manager.services.sessions import SessionCreator
from manager.services.transfers import TransferGate
from manager.streams import StreamHub
from manager.sweep import Sweeper

CONFIG = web.AppKey("kraken.config", ManagerConfig)
DB = web.AppKey("kraken.db", AsyncEngine)
EVENTS = web.AppKey("kraken.events", EventBus)
REGISTRY = web.AppKey("kraken.registry", AgentRegistry)
KEYPAIRS = web.AppKey("kraken.keypairs", KeypairStore)
COUNTER = web.AppKey("kraken.counter", QueryCounter)
CREATOR = web.AppKey("kraken.creator", SessionCreator)
CONTROL = web.AppKey("kraken.control", SessionControl)
FILES = web.AppKey("kraken.files", SessionFiles)
TRANSFERS = web.AppKey("kraken.transfers", TransferGate)
SWEEPER = web.AppKey("kraken.sweeper", Sweeper)
STREAMS = web.AppKey("kraken.streams", StreamHub)
