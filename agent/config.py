"""The agent's typed configuration (one per process), loaded from TOML + environment.

Environment overrides use the prefix ``KRAKEN_AGENT`` (``KRAKEN_AGENT__MANAGER__ENDPOINTS``).
"""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, Field

from common.config import ConfigError, load_config
from common.limits import KERNEL_OUTPUT_BYTES, RUN_OUTPUT_BYTES
from common.slots import parse_bytes
from jail.policy import KERNEL_GID, KERNEL_UID

ENV_PREFIX = "KRAKEN_AGENT"
MAX_ID = (1 << 32) - 2  # (uid_t) -1 means "unchanged" to chown(2)
MIN_SCRATCH = 16 << 20  # the smallest ext4 image worth making


class ManagerConfig(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    endpoints: list[str] = Field(min_length=1)
    public_key: str | None = None
    public_key_file: Path | None = None
    join_token: str | None = Field(default=None, repr=False)
    join_token_file: Path | None = None
    request_timeout: float = Field(default=10.0, gt=0)
    link_timeout: float = Field(default=5.0, ge=0)  # a replica silent this long is down

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
    util_percent: int = Field(default=0, ge=0, le=100)  # the fixed figures its stats show
    mem_used: int = Field(default=0, ge=0)


class ResourcesConfig(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    reserved_cpu: int = Field(default=0, ge=0)
    reserved_mem: int = 0
    # CPU is shared: the agent offers its cores × cpu_overcommit, and a session's cores
    # are a CPU limit (NanoCpus, CpuShares), not reserved cores. 100 lets 200 sessions
    # of the default 1 core each onto a 2-core host; an idle session costs ~no CPU, and
    # busy ones share the cores in proportion to their slots (docs/agent.md).
    cpu_overcommit: float = Field(default=100.0, ge=1.0, le=10_000.0)
    # memory stays a hard reservation (1.0) unless the operator accepts that sessions
    # together may ask for more than the host has (each container keeps its own limit)
    mem_overcommit: float = Field(default=1.0, ge=1.0, le=100.0)
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
    ping_interval: float = Field(default=5.0, gt=0)
    unresponsive_timeout: float = Field(default=30.0, ge=0)  # 0: never declare a hang


class StatsConfig(BaseModel):
    """Live stats sent to the managers (agent/stats_report.py); interval 0 turns it off."""

    model_config = pydantic.ConfigDict(extra="forbid")

    interval: float = Field(default=10.0, ge=0)
    concurrency: int = Field(default=4, ge=1)


class JailConfig(BaseModel):
    """The uid/gid every session process runs as; they must name no host account/group."""

    model_config = pydantic.ConfigDict(extra="forbid")

    uid: int = Field(default=KERNEL_UID, ge=1, le=MAX_ID)
    gid: int = Field(default=KERNEL_GID, ge=1, le=MAX_ID)


class ScratchConfig(BaseModel):
    """Each kernel's /home/work: a loop-mounted ext4 image of a bounded size (or a plain dir)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    quota: Literal["loop", "none"] = "loop"
    default_size: int = Field(default=1 << 30, ge=MIN_SCRATCH)
    max_size: int = Field(default=10 << 30, ge=MIN_SCRATCH)
    preallocate: bool = False

    @pydantic.field_validator("default_size", "max_size", mode="before")
    @classmethod
    def _bytes(cls, v: object) -> int:
        if isinstance(v, (str, int)):
            return parse_bytes(v)
        raise ValueError("a size such as 1g")

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> ScratchConfig:
        if self.default_size > self.max_size:
            raise ValueError("scratch.default_size exceeds scratch.max_size")
        return self


class RunsConfig(BaseModel):
    """Console output held between two execute calls (common/console.py has the rule)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    max_output: int = Field(default=RUN_OUTPUT_BYTES, gt=0)  # per run, every item kind
    max_kernel_output: int = Field(default=KERNEL_OUTPUT_BYTES, gt=0)  # all runs of a kernel

    @pydantic.field_validator("max_output", "max_kernel_output", mode="before")
    @classmethod
    def _bytes(cls, v: object) -> int:
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            return parse_bytes(v)
        raise ValueError("must be a size such as 8m")


class AgentConfig(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    agent_id: str = Field(default_factory=socket.gethostname, min_length=1)
    region: str = "local"
    # the agent group it joins (Backend.AI's scaling group; docs/admin.md)
    group: str = Field(default="default", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    manager: ManagerConfig
    docker: DockerConfig = DockerConfig()
    scratch_root: Path = Path("/var/lib/kraken/scratch")
    resources: ResourcesConfig = ResourcesConfig()
    logging: LoggingConfig = LoggingConfig()
    runner: RunnerConfig = RunnerConfig()
    jail: JailConfig = JailConfig()
    scratch: ScratchConfig = ScratchConfig()
    runs: RunsConfig = RunsConfig()
    stats: StatsConfig = StatsConfig()


def load_agent_config(path: str | Path | None) -> AgentConfig:
    """Load and validate; raises ``ConfigError`` with one clear line."""
    return load_config(AgentConfig, path, ENV_PREFIX)
