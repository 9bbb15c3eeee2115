"""The runner's configuration, read once from the environment."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.msg_runner import CONTROL_PORT, INPUT_PORT, OUTPUT_PORT
from common.services import SERVICE_DEFS_DIR


class SettingsError(ValueError):
    """An environment variable holds a value the runner cannot use."""


@dataclass(frozen=True)
class Settings:
    """Where to bind, where user code runs, and the image's batch defaults."""

    host: str = "0.0.0.0"
    port_base: int = INPUT_PORT
    workdir: Path = Path("/home/work")
    default_clean: str = ""
    default_build: str = ""
    default_exec: str = ""
    services_dir: Path = Path(SERVICE_DEFS_DIR)  # the image's service definitions

    @property
    def input_endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port_base}"

    @property
    def output_endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port_base + OUTPUT_PORT - INPUT_PORT}"

    @property
    def control_endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port_base + CONTROL_PORT - INPUT_PORT}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        raw_port = env.get("KRAKEN_RUNNER_PORT_BASE", str(INPUT_PORT))
        try:
            port_base = int(raw_port)
        except ValueError:
            raise SettingsError(f"KRAKEN_RUNNER_PORT_BASE is not a number: {raw_port!r}") from None
        if not 1 <= port_base <= 65533:
            raise SettingsError(f"KRAKEN_RUNNER_PORT_BASE out of range: {port_base}")
        workdir = Path(env.get("KRAKEN_RUNNER_WORKDIR") or env.get("HOME") or "/home/work")
        if not workdir.is_dir():
            raise SettingsError(f"work directory does not exist: {workdir}")
        return cls(
            host=env.get("KRAKEN_RUNNER_HOST", "0.0.0.0") or "0.0.0.0",
            port_base=port_base,
            workdir=workdir,
            default_clean=env.get("KRAKEN_BATCH_DEFAULT_CLEAN", ""),
            default_build=env.get("KRAKEN_BATCH_DEFAULT_BUILD", ""),
            default_exec=env.get("KRAKEN_BATCH_DEFAULT_EXEC", ""),
            services_dir=Path(env.get("KRAKEN_RUNNER_SERVICES_DIR") or SERVICE_DEFS_DIR),
        )
