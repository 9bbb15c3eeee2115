"""The agent CLI refuses a bad config with one line and a non-zero exit."""
from __future__ import annotations

import pwd
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


def test_session_uid_of_a_host_account_is_refused(tmp_path: Path) -> None:
    user = next(p for p in pwd.getpwall() if p.pw_uid > 0)
    path = tmp_path / "agent.toml"
    path.write_text('[manager]\nendpoints = ["tcp://127.0.0.1:1"]\njoin_token = "t"\n'
                    f'[jail]\nuid = {user.pw_uid}\n')
    proc = run_agent("-c", str(path))
    assert proc.returncode != 0 and proc.stderr.strip().count("\n") == 0
    assert f"jail.uid {user.pw_uid} is the host account '{user.pw_name}'" in proc.stderr
