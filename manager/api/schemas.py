"""Validation of request bodies into service specs; every bad field → a clear 400."""
from __future__ import annotations

import re
from typing import Any

from common.errors import InvalidAPIParameters
from common.limits import MAX_CODE_CHARS
from manager.services.control import ExecuteSpec
from manager.services.images import memory_bytes
from manager.services.policies import NAME
from manager.services.sessions import CreateSpec
from manager.vfolders.paths import parse_mounts

TOKEN = re.compile(r"^[A-Za-z0-9._:-]{4,64}$")
EXEC_MODES = {"query", "batch", "continue", "input", "user-input"}
MAX_CODE = MAX_CODE_CHARS


def _str(body: dict[str, Any], key: str, *, required: bool = False,
         max_len: int = 256) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidAPIParameters(f"'{key}' is required")
        return None
    if not isinstance(value, str):
        raise InvalidAPIParameters(f"'{key}' must be a string")
    if len(value) > max_len:
        raise InvalidAPIParameters(f"'{key}' is longer than {max_len} characters")
    return value


def _number(config: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise InvalidAPIParameters(f"'config.{key}' must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidAPIParameters(f"'config.{key}' must be a number")
        if value <= 0 and key != "instanceGPU" and key != "instanceGPUs":
            raise InvalidAPIParameters(f"'config.{key}' must be positive")
        if value < 0:
            raise InvalidAPIParameters(f"'config.{key}' must not be negative")
        return float(value)
    return None


def _environ(config: dict[str, Any]) -> dict[str, str]:
    environ = config.get("environ") or {}
    if not isinstance(environ, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in environ.items()):
        raise InvalidAPIParameters("'config.environ' must map strings to strings")
    return environ


def _config(body: dict[str, Any]) -> dict[str, Any]:
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise InvalidAPIParameters("'config' must be an object")
    cluster = config.get("clusterSize")
    if cluster is not None and (isinstance(cluster, bool) or cluster != 1):
        raise InvalidAPIParameters("'config.clusterSize' must be 1 (multi-container "
                                   "sessions are not supported yet)")
    return config


def parse_create(body: dict[str, Any]) -> CreateSpec:
    lang = _str(body, "lang", required=True)
    assert lang is not None
    if not lang.strip():
        raise InvalidAPIParameters("'lang' must not be empty")
    token = _str(body, "clientSessionToken", required=True)
    assert token is not None
    if not TOKEN.match(token):
        raise InvalidAPIParameters(
            "'clientSessionToken' must be 4-64 characters of A-Z a-z 0-9 . _ : -")
    config = _config(body)
    mem = _number(config, "instanceMemory")
    return CreateSpec(
        lang=lang, session_name=token, tag=_str(body, "tag"), environ=_environ(config),
        cpu=_number(config, "instanceCores"),
        mem=memory_bytes(mem) if mem is not None else None,
        gpu=_number(config, "instanceGPUs", "instanceGPU") or 0.0,
        mounts=tuple(parse_mounts(config.get("mounts"))),
        group=_name(config, "scalingGroup"), preset=_name(config, "resourcePreset"),
        max_wait=_max_wait(body), enqueue_only=_flag(body, "enqueueOnly"),
    )


def _name(config: dict[str, Any], key: str) -> str | None:
    """An agent group or preset name (``config.scalingGroup``, ``config.resourcePreset``)."""
    value = _str(config, key, max_len=64)
    if value is not None and not NAME.fullmatch(value):
        raise InvalidAPIParameters(f"'config.{key}' must be 1-64 of A-Z a-z 0-9 . _ -")
    return value


def _max_wait(body: dict[str, Any]) -> float | None:
    """``maxWaitSeconds``: how long a create may wait queued (> 0; the upper bound is
    the manager's ``scheduler.max_wait_limit``)."""
    value = body.get("maxWaitSeconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidAPIParameters("'maxWaitSeconds' must be a positive number")
    return float(value)


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise InvalidAPIParameters(f"'{key}' must be true or false")
    return value


def parse_execute(body: dict[str, Any]) -> ExecuteSpec:
    mode = _str(body, "mode") or "query"
    if mode not in EXEC_MODES:
        raise InvalidAPIParameters(f"'mode' must be one of {sorted(EXEC_MODES - {'user-input'})}")
    mode = "input" if mode == "user-input" else mode
    code = _str(body, "code", max_len=MAX_CODE) or ""
    run_id = _str(body, "runId", max_len=128)
    if mode in ("continue", "input") and not run_id:
        raise InvalidAPIParameters(f"'runId' is required in {mode} mode")
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise InvalidAPIParameters("'options' must be an object")
    return ExecuteSpec(mode=mode, code=code, run_id=run_id or None, options=options)


def parse_complete(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    code = _str(body, "code", max_len=MAX_CODE) or ""
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise InvalidAPIParameters("'options' must be an object")
    return code, options
