"""The agent's typed configuration (one per process), loaded from TOML + environment.

Environment overrides use the prefix ``KRAKEN_AGENT`` (``KRAKEN_AGENT__MANAGER__ENDPOINTS``).
"""
from __future__ import annotations

import socket
from pathlib import Path

import pydantic
from pydantic import BaseModel, Field

from common.config import ConfigError, load_config
from common.slots import parse_bytes

ENV_PREFIX = "KRAKEN_AGENT"


class ManagerConfig(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    endpoints: list[str] = Field(min_length=1)
    public_key: str | None = None
    public_key_file: Path | None = None
    join_token: str | None = Field(default=None, repr=False)
    join_token_file: Path | None = None
    request_timeout: float = Field(default=10.0, gt=0)

    @pydantic.field_validator("endpoints")
    @classmethod
    def _tcp_only(cls, v: list[str]) -> list[str]:
        for ep in v:
            if not ep.startswith(("tcp://", "ipc://")):
                raise ValueError(f"endpoint {ep!r} must start with tcp:// or ipc://")
        return v

    @pydantic.model_validator(mode="after")
    def _one_of_each(self) -> ManagerConfig:
        if self.join_token is None and self.join_token_file is None:
            raise ValueError("set join_token or join_token_file")
        return self

    def server_public_key(self) -> bytes | None:
        """The manager's z85 CurveZMQ public key, or None for a plain (test) link."""
        if self.public_key is not None:
            return self.public_key.strip().encode()
        if self.public_key_file is not None:
            return _read_secret(self.public_key_file).encode()
        return None

    def token(self) -> str:
        if self.join_token is not None:
            return self.join_token
        assert self.join_token_file is not None
        return _read_secret(self.join_token_file)


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


class DockerConfig(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    network: str = "kraken-kernels"
    stop_timeout: int = Field(default=2, ge=0)


class FakeGpu(BaseModel):
    uuid: str
    name: str = "Fake GPU"
    memory: int = 0


class ResourcesConfig(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    reserved_cpu: int = Field(default=0, ge=0)
    reserved_mem: int = 0
    fake_gpus: list[FakeGpu] | None = None

    @pydantic.field_validator("reserved_mem", mode="before")
    @classmethod
    def _bytes(cls, v: object) -> int:
        if isinstance(v, (str, int)):
            return parse_bytes(v)
        raise ValueError("reserved_mem must be a size such as 512m")


class LoggingConfig(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    level: str = "INFO"
    file: Path | None = None


class RunnerConfig(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    ready_timeout: float = Field(default=30.0, gt=0)


class AgentConfig(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    agent_id: str = Field(default_factory=socket.gethostname, min_length=1)
    region: str = "local"
    manager: ManagerConfig
    docker: DockerConfig = DockerConfig()
    scratch_root: Path = Path("/var/lib/kraken/scratch")
    resources: ResourcesConfig = ResourcesConfig()
    logging: LoggingConfig = LoggingConfig()
    runner: RunnerConfig = RunnerConfig()


def load_agent_config(path: str | Path | None) -> AgentConfig:
    """Load and validate; raises ``ConfigError`` with one clear line."""
    return load_config(AgentConfig, path, ENV_PREFIX)
