"""The agent CLI refuses a bad config with one line and a non-zero exit."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=60, check=False, cwd=Path(__file__).parents[3])


def test_missing_config_file(tmp_path: Path) -> None:
    proc = run_agent("-c", str(tmp_path / "none.toml"))
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "cannot read config" in proc.stderr


def test_invalid_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[manager]\nendpoints = ["http://x"]\njoin_token = "s3cr3t-token"\n')
    proc = run_agent("-c", str(path))
    assert proc.returncode != 0 and "manager.endpoints" in proc.stderr
    assert "s3cr3t-token" not in proc.stderr
