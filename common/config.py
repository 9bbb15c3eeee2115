"""Loading one typed config per process: a TOML file, then environment overrides.

``KRAKEN_MANAGER__DB__URL=...`` overrides ``[db] url`` of a config whose env prefix is
``KRAKEN_MANAGER``; values are parsed as JSON when they parse, else taken as strings.
Validation is pydantic's; an invalid config stops the process with one clear line.
"""
from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import pydantic

C = TypeVar("C", bound=pydantic.BaseModel)


class ConfigError(Exception):
    """The configuration file or environment is invalid."""


def _env_overrides(prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    head = prefix.upper() + "__"
    for key, raw in environ.items():
        if not key.startswith(head):
            continue
        path = [p.lower() for p in key[len(head):].split("__") if p]
        if not path:
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def load_config(model: type[C], path: str | Path | None, env_prefix: str,
                environ: Mapping[str, str] | None = None) -> C:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from None
    data = _merge(data, _env_overrides(env_prefix, os.environ if environ is None else environ))
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid config at {where}: {first['msg']}") from None
