"""Lets the official ``backend.ai-client==18.12.3`` run ``backend.ai app`` on Python >= 3.10.

That client passes ``loop=`` to ``asyncio.start_server`` (``ProxyRunner.ready`` of
``backend.ai app``: ``TypeError: BaseEventLoop.create_server() got an unexpected keyword
argument 'loop'``) and to ``asyncio.gather`` (its shutdown helper, when connections are
still open). Python 3.10 removed that argument; the loop the client passes is always the
running one, so dropping it changes nothing else.

Nothing is installed: a test puts this directory on the client's ``PYTHONPATH`` and Python
imports ``sitecustomize`` at start-up (docs/runner.md, "The Jupyter service"). The
client's own files are untouched.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any


def _without_loop(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, loop: object = None, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)
    return call


asyncio.start_server = _without_loop(asyncio.start_server)  # type: ignore[assignment]
asyncio.gather = _without_loop(asyncio.gather)  # type: ignore[assignment]
