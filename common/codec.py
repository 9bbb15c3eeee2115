"""Framing and serialization of wire messages, knowing nothing of what they mean.

A message is a frozen, keyword-only dataclass registered on a ``Protocol`` under a
unique ``msg_type``. On the wire it is one msgpack frame::

    [protocol_version, msg_type, corr_id, {field: value, ...}]

``corr_id`` ties a reply to its request: a request carries a positive id, its
reply the same id negated, and a one-way message 0. Decoding ignores
fields it does not know and fills missing ones from defaults, so protocols evolve
by adding messages and optional fields (docs/protocol.md). Field values are msgpack
primitives only: None, bool, int, float, str, bytes, lists and string-keyed maps.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, dataclass_transform

import msgpack


class WireFormatError(ValueError):
    """A frame could not be decoded into a known message."""


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Message:
    """Base of every wire message; subclasses are made by ``Protocol.message``."""

    msg_type: ClassVar[str] = ""
    _fields: ClassVar[tuple[str, ...]] = ()

    def to_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}


M = TypeVar("M", bound=type[Message])


class Protocol:
    """A named, versioned set of messages."""

    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version
        self._registry: dict[str, type[Message]] = {}

    def message(self, msg_type: str) -> Callable[[M], M]:
        def register(cls: M) -> M:
            if msg_type in self._registry:
                raise TypeError(f"{self.name}: message type {msg_type!r} defined twice")
            made: Any = dataclasses.dataclass(frozen=True, kw_only=True, slots=True)(cls)
            made.msg_type = msg_type
            made._fields = tuple(f.name for f in dataclasses.fields(made))
            self._registry[msg_type] = made
            return typing.cast(M, made)

        return register

    @property
    def message_types(self) -> dict[str, type[Message]]:
        return dict(self._registry)

    def encode(self, msg: Message, corr_id: int = 0) -> bytes:
        if self._registry.get(msg.msg_type) is not type(msg):
            raise WireFormatError(f"{type(msg).__name__} is not a {self.name} message")
        return msgpack.packb(
            [self.version, msg.msg_type, corr_id, msg.to_fields()], use_bin_type=True
        )

    def decode(self, frame: bytes) -> tuple[Message, int]:
        try:
            version, msg_type, corr_id, body = msgpack.unpackb(frame, raw=False)
        except Exception as e:  # msgpack raises several unrelated types
            raise WireFormatError(f"undecodable {self.name} frame: {e}") from None
        if not isinstance(version, int) or version < 1:
            raise WireFormatError(f"bad {self.name} protocol version {version!r}")
        cls = self._registry.get(msg_type)
        if cls is None:
            raise WireFormatError(f"unknown {self.name} message type {msg_type!r}")
        if not isinstance(body, dict):
            raise WireFormatError(f"{msg_type}: body is not a map")
        known = {k: v for k, v in body.items() if k in cls._fields}
        try:
            return cls(**known), int(corr_id)
        except TypeError as e:
            raise WireFormatError(f"{msg_type}: {e}") from None
