"""The manager's one typed configuration (TOML file + ``KRAKEN_MANAGER__*`` env)."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.config import load_config
from common.slots import parse_bytes

ENV_PREFIX = "KRAKEN_MANAGER"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class APIConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)


class DBConfig(_Section):
    url: str = "postgresql+asyncpg://kraken:kraken@127.0.0.1:15432/kraken"

    @field_validator("url")
    @classmethod
    def _asyncpg(cls, v: str) -> str:
        if v.startswith(("postgresql://", "postgres://")):
            return "postgresql+asyncpg://" + v.split("://", 1)[1]
        if not v.startswith("postgresql+asyncpg://"):
            raise ValueError("db.url must be a postgresql:// or postgresql+asyncpg:// URL")
        return v


class RedisConfig(_Section):
    url: str = "redis://127.0.0.1:16379/0"


class LinkConfig(_Section):
    bind: str = "tcp://127.0.0.1:5020"
    secret_key_file: Path | None = None
    public_key_file: Path | None = None
    insecure: bool = False
    join_token: str | None = None
    join_token_file: Path | None = None
    heartbeat_interval: float = Field(default=3.0, gt=0)
    heartbeat_timeout: float = Field(default=10.0, gt=0)
    create_timeout: float = Field(default=60.0, gt=0)
    request_timeout: float = Field(default=30.0, gt=0)

    def read_join_token(self) -> str:
        """The join token agents must present; raises ValueError when none is set."""
        if self.join_token:
            return self.join_token
        if self.join_token_file is not None:
            token = self.join_token_file.read_text().strip()
            if token:
                return token
        raise ValueError("link.join_token or link.join_token_file must be set")


class ExecConfig(_Section):
    flush_timeout: float = Field(default=2.0, gt=0)
    timeout: float = Field(default=600.0, gt=0)


class SessionsConfig(_Section):
    default_cpu: float = Field(default=1, gt=0)
    default_mem: str = "1g"
    idle_timeout: float = Field(default=0.0, ge=0)  # seconds; 0 = never reaped

    @field_validator("default_mem")
    @classmethod
    def _mem(cls, v: str) -> str:
        parse_bytes(v)
        return v

    @property
    def default_mem_bytes(self) -> int:
        return parse_bytes(self.default_mem)


class VFoldersConfig(_Section):
    """Virtual folders live in ``<root>/<host>/<folder id hex>`` (docs/vfolders.md)."""

    root: Path = Field(default=Path("var/vfolders"), validate_default=True)
    host: str = Field(default="local", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    max_size: str = "1g"  # per folder (seed 004 §2.15: 1 GiB)
    max_files: int = Field(default=1000, gt=0)  # per folder
    max_folders: int = Field(default=10, gt=0)  # owned per keypair
    owner_uid: int = Field(default=1000, ge=0)  # the kernel user ``work``
    owner_gid: int = Field(default=1000, ge=0)

    @field_validator("root")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("max_size")
    @classmethod
    def _size(cls, v: str) -> str:
        parse_bytes(v)
        return v

    @property
    def max_size_bytes(self) -> int:
        return parse_bytes(self.max_size)

    @property
    def host_dir(self) -> Path:
        return self.root / self.host


class RateLimitConfig(_Section):
    """Rolling-window request limits (seed 004 §2.8)."""

    window: int = Field(default=900, gt=0)  # seconds
    keypair_default: int = Field(default=30000, gt=0)  # when keypair_policies has none
    anonymous: int = Field(default=3000, gt=0)  # per client IP, unauthenticated


class LoggingConfig(_Section):
    level: str = "INFO"
    file: Path | None = None


class ManagerConfig(_Section):
    api: APIConfig = APIConfig()
    db: DBConfig = DBConfig()
    redis: RedisConfig = RedisConfig()
    link: LinkConfig = LinkConfig()
    exec: ExecConfig = ExecConfig()
    sessions: SessionsConfig = SessionsConfig()
    ratelimit: RateLimitConfig = RateLimitConfig()
    vfolders: VFoldersConfig = VFoldersConfig()
    logging: LoggingConfig = LoggingConfig()


def load_manager_config(path: str | Path | None) -> ManagerConfig:
    """Load and validate the manager config; raises common.config.ConfigError."""
    return load_config(ManagerConfig, path, ENV_PREFIX)
