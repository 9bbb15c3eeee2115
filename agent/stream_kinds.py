"""The one table of stream kinds: ``stream-start``'s ``kind`` → its starter.

Each starter is ``(kernel, params, sink) -> (handler, info)`` (``agent.streams``).
"""
from __future__ import annotations

from agent.proxy import start_proxy
from agent.stream_runs import start_execute
from agent.streams import StreamStarter
from agent.terminals import start_pty

STARTERS: dict[str, StreamStarter] = {
    "pty": start_pty,  # agent/terminals.py
    "execute": start_execute,  # agent/stream_runs.py
    "proxy": start_proxy,  # agent/proxy.py (service proxies)
}
