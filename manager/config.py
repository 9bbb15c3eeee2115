"""The manager's one typed configuration (TOML file + ``KRAKEN_MANAGER__*`` env)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from common.config import load_config
from common.limits import RESPONSE_BYTES
from common.slots import parse_bytes
from jail.policy import KERNEL_GID, KERNEL_UID

ENV_PREFIX = "KRAKEN_MANAGER"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class APIConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    # Host header values a signed request may carry ("name:port", or "name" for port 80);
    # empty: the address and port the request arrived on (plus localhost on loopback)
    allowed_hosts: list[str] = Field(default_factory=list)
    clock_skew: int = Field(default=900, gt=0, le=3600)  # seconds a Date may be off
    strict_max_body: str = "32m"  # strict signing hashes the body in memory up to this

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        return [h.strip().lower() for h in v if h.strip()]

    @field_validator("strict_max_body")
    @classmethod
    def _body(cls, v: str) -> str:
        parse_bytes(v)
        return v

    @property
    def strict_max_body_bytes(self) -> int:
        return parse_bytes(self.strict_max_body)


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
    url: str = "redis://127.0.0.1:16379/0"  # redis://:PASSWORD@host:port/db


class SecretsConfig(_Section):
    """Keypair secret keys are encrypted at rest with the key in ``key_file`` (0600),
    which lives outside the database (``python -m manager gen-secrets-key PATH``)."""

    key_file: Path | None = None


class ConsoleConfig(_Section):
    """Console sign-in throttling: failures counted per access key and per client IP."""

    window: int = Field(default=300, gt=0)  # seconds
    max_failures_per_key: int = Field(default=5, gt=0)
    max_failures_per_ip: int = Field(default=20, gt=0)


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


class ReconcileConfig(_Section):
    """Deadlines of the non-final states and the agent-loss grace (docs/reconciliation.md).

    Deadlines shorter than the call they cover are raised to it (plus ``settle``)."""

    lost_grace: float = Field(default=300.0, gt=0)  # LOST this long → sessions ERROR
    settle: float = Field(default=3.0, gt=0)  # a reply may still be on its way
    pending_deadline: float = Field(default=30.0, gt=0)  # PENDING, SCHEDULED
    preparing_deadline: float = Field(default=90.0, gt=0)
    restarting_deadline: float = Field(default=90.0, gt=0)
    terminating_deadline: float = Field(default=60.0, gt=0)
    sweep_interval: float = Field(default=10.0, gt=0)
    startup_wait: float = Field(default=30.0, ge=0)  # for PostgreSQL and Redis to answer


class ExecConfig(_Section):
    flush_timeout: float = Field(default=2.0, gt=0)
    timeout: float = Field(default=600.0, gt=0)
    max_response: int = Field(default=RESPONSE_BYTES, gt=0)  # console bytes per response

    @field_validator("max_response", mode="before")
    @classmethod
    def _size(cls, v: object) -> int:
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            return parse_bytes(v)
        raise ValueError("exec.max_response must be a size such as 16m")


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


class SchedulerConfig(_Section):
    """The PENDING queue (docs/admin.md): a create that does not fit waits up to
    ``max_wait`` seconds (or the request's ``maxWaitSeconds``, at most ``max_wait_limit``)."""

    policy: Literal["fifo", "drf"] = "fifo"  # default placement policy of agent groups
    max_wait: float = Field(default=60.0, gt=0)
    max_wait_limit: float = Field(default=3600.0, gt=0)
    sweep_interval: float = Field(default=30.0, gt=0)  # safety pass, beside the events


class VFoldersConfig(_Section):
    """Virtual folders live in ``<root>/<host>/<folder id hex>`` (docs/vfolders.md)."""

    root: Path = Field(default=Path("var/vfolders"), validate_default=True)
    host: str = Field(default="local", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    max_size: str = "1g"  # per folder (seed 004 §2.15: 1 GiB)
    max_files: int = Field(default=1000, gt=0)  # per folder
    max_folders: int = Field(default=10, gt=0)  # owned per keypair
    # the session uid/gid: folder contents belong to it, and the confined-file workers
    # that touch them run as it (never 0)
    owner_uid: int = Field(default=KERNEL_UID, gt=0)
    owner_gid: int = Field(default=KERNEL_GID, gt=0)
    workers: int = Field(default=2, gt=0, le=64)  # confined-file worker processes
    max_download: str = "4g"  # apparent bytes of one download request (tar members summed)

    @field_validator("root")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("max_size", "max_download")
    @classmethod
    def _size(cls, v: str) -> str:
        parse_bytes(v)
        return v

    @property
    def max_size_bytes(self) -> int:
        return parse_bytes(self.max_size)

    @property
    def max_download_bytes(self) -> int:
        return parse_bytes(self.max_download)

    @property
    def host_dir(self) -> Path:
        return self.root / self.host


class TransfersConfig(_Section):
    """Concurrent file transfers (uploads and downloads of folders and session files):
    a request over a bound waits ``wait`` seconds for a slot, then answers 429
    ``too-many-transfers`` (docs/vfolders.md)."""

    per_keypair: int = Field(default=4, gt=0)
    per_agent: int = Field(default=8, gt=0)  # session files relayed to one agent
    wait: float = Field(default=2.0, ge=0)


class RateLimitConfig(_Section):
    """Rolling-window request limits (seed 004 §2.8)."""

    window: int = Field(default=900, gt=0)  # seconds
    keypair_default: int = Field(default=30000, gt=0)  # when keypair_policies has none
    anonymous: int = Field(default=3000, gt=0)  # per client IP, unauthenticated


class GraphQLConfig(_Section):
    """Bounds on one admin GraphQL request, checked before it runs (docs/admin.md)."""

    max_query_chars: int = Field(default=100_000, gt=0)  # source length
    max_tokens: int = Field(default=5_000, gt=0)  # lexical tokens (and comments)
    max_fields: int = Field(default=500, gt=0)  # field selections, fragments expanded
    max_aliases: int = Field(default=30, ge=0)
    max_depth: int = Field(default=10, gt=0)
    max_cost: int = Field(default=100_000, gt=0)  # estimated values produced
    list_size: int = Field(default=50, gt=0)  # what a list field counts as in the cost


class SMTPConfig(_Section):
    """The mail server atlas sends confirmation and temporary-password mails through."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, gt=0, le=65535)
    from_address: str = "atlas@localhost"
    starttls: bool = False  # STARTTLS after connecting (port 587)
    tls: bool = False  # TLS from the start (port 465)
    username: str | None = None
    password: SecretStr | None = None  # never logged, never in repr
    timeout: float = Field(default=15.0, gt=0)


class AtlasLimitsConfig(_Section):
    """Upload limits of one model ([atlas.jobs.limits.<model>]); unset keys keep the
    catalogue's (manager/atlas/models.toml), which are the seed's."""

    formats: list[str] | None = None
    min_seconds: float | None = Field(default=None, ge=0)
    max_seconds: float | None = Field(default=None, gt=0)
    min_bytes: str | None = None
    max_bytes: str | None = None
    min_resolution: tuple[int, int] | None = None  # (long side, short side)
    max_resolution: tuple[int, int] | None = None


class AtlasJobsConfig(_Section):
    """The job API and driver ([atlas.jobs], docs/atlas.md "Job API")."""

    limits: dict[str, AtlasLimitsConfig] = {}
    drive: bool = True  # run the job driver in this replica (False: API only)
    cpu: float = Field(default=2.0, gt=0)  # per job session
    mem: str = "4g"
    max_wait: float | None = Field(default=None, gt=0)  # queued job deadline; None: none
    folder_max_size: str = "50g"  # the account's `atlas` folder
    folder_max_files: int = Field(default=100_000, gt=0)
    lease: float = Field(default=30.0, gt=0)  # seconds a replica holds a job it drives
    poll_interval: float = Field(default=1.0, gt=0)  # job files and session status
    claim_interval: float = Field(default=5.0, gt=0)  # looking for unleased jobs
    probe_timeout: float = Field(default=30.0, gt=0)  # checking one uploaded video
    upload_dir: Path | None = None  # temporary uploads; None: the system's temp dir
    keepalive: float = Field(default=20.0, gt=0)  # WebSocket "listening" messages
    ws_queue: int = Field(default=256, gt=0)  # messages queued per socket, then dropped

    @field_validator("mem", "folder_max_size")
    @classmethod
    def _size(cls, v: str) -> str:
        parse_bytes(v)
        return v


class AtlasConfig(_Section):
    """The generation product (docs/atlas.md). Without ``token_key_file`` its routes
    answer 503 (``python -m manager gen-atlas-key PATH`` writes a key)."""

    token_key_file: Path | None = None
    public_url: str = "http://127.0.0.1:8081"  # the base of links in mails
    require_verified_email: bool = True  # sign-in refused (403) until the link is followed
    smtp: SMTPConfig = SMTPConfig()
    jobs: AtlasJobsConfig = AtlasJobsConfig()  # the job API and driver

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("atlas.public_url must be an http:// or https:// URL")
        return v.rstrip("/")


class LoggingConfig(_Section):
    level: str = "INFO"
    file: Path | None = None


class ManagerConfig(_Section):
    api: APIConfig = APIConfig()
    db: DBConfig = DBConfig()
    redis: RedisConfig = RedisConfig()
    secrets: SecretsConfig = SecretsConfig()
    console: ConsoleConfig = ConsoleConfig()
    link: LinkConfig = LinkConfig()
    exec: ExecConfig = ExecConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    sessions: SessionsConfig = SessionsConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    ratelimit: RateLimitConfig = RateLimitConfig()
    vfolders: VFoldersConfig = VFoldersConfig()
    transfers: TransfersConfig = TransfersConfig()
    graphql: GraphQLConfig = GraphQLConfig()
    atlas: AtlasConfig = AtlasConfig()
    logging: LoggingConfig = LoggingConfig()


def load_manager_config(path: str | Path | None) -> ManagerConfig:
    """Load and validate the manager config; raises common.config.ConfigError."""
    return load_config(ManagerConfig, path, ENV_PREFIX)
