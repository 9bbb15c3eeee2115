"""The official backend.ai-client==18.12.3, unmodified, against a real cluster."""
from __future__ import annotations

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e


def test_run_prints_hello(bai: Run, cluster: Cluster) -> None:
    out = bai("run", "--rm", "python", "-c", "print('hello')")
    assert out.returncode == 0, out.stderr
    assert "hello" in out.stdout.splitlines()
    assert cluster.containers() == []  # --rm leaves nothing behind


def test_session_token_keeps_state_between_runs(bai: Run) -> None:
    first = bai("run", "-t", "e2e-state", "python", "-c", "x = 41")
    assert first.returncode == 0, first.stderr
    second = bai("run", "-t", "e2e-state", "python", "-c", "print(x + 1)")
    assert second.returncode == 0, second.stderr
    assert "42" in second.stdout
    assert "Reusing session" in second.stdout + second.stderr
    done = bai("terminate", "e2e-state")
    assert done.returncode == 0, done.stderr


def test_exception_reaches_stderr(bai: Run) -> None:
    out = bai("run", "--rm", "python", "-c", "print('before'); 1/0")
    assert "before" in out.stdout
    assert "ZeroDivisionError" in out.stderr


def test_input_is_answered_from_stdin(bai: Run) -> None:
    out = bai("run", "--rm", "python", "-c", "n = input('name? '); print('hi ' + n)",
              input="kraken\n")
    assert out.returncode == 0, out.stderr
    assert "hi kraken" in out.stdout


def test_stats_after_rm(bai: Run) -> None:
    out = bai("run", "--rm", "--stats", "python", "-c", "print(sum(range(10**6)))")
    assert out.returncode == 0, out.stderr
    assert "499999500000" in out.stdout
    assert "cpu_used" in out.stdout + out.stderr


def test_unknown_image_fails_cleanly(bai: Run, cluster: Cluster) -> None:
    out = bai("run", "--rm", "no-such-lang", "-c", "print(1)")
    assert out.returncode != 0 or "404" in out.stdout + out.stderr
    assert "404" in out.stdout + out.stderr and "image" in out.stdout + out.stderr
    assert cluster.containers() == []
    live = cluster.sql("SELECT count(*) FROM kernels WHERE status NOT IN "
                       "('TERMINATED', 'ERROR', 'CANCELLED')")
    assert live == 0


def test_wrong_secret_is_refused(bai: Run) -> None:
    out = bai("run", "--rm", "python", "-c", "print(1)", BACKEND_SECRET_KEY="wrong-secret")
    assert out.returncode != 0 or "401" in out.stdout + out.stderr
    assert "401" in out.stdout + out.stderr
    assert "1\n" not in out.stdout


def test_sdk_interrupt_restart_info(client_py: Run) -> None:
    code = r'''
import time
from ai.backend.client.session import Session
with Session() as s:
    k = s.Kernel.get_or_create("python", client_token="e2e-sdk")
    r = k.execute(None, "y = 7\nimport time\nwhile True: time.sleep(0.1)", mode="query")
    assert r["status"] == "continued", r
    k.interrupt()
    for _ in range(20):
        r = k.execute(r["runId"], "", mode="continue")
        if r["status"] == "finished":
            break
    assert r["status"] == "finished", r
    assert any("KeyboardInterrupt" in item[1] for item in r["console"]), r
    r = k.execute(None, "print(y)", mode="query")
    assert r["console"] == [["stdout", "7\n"]], r
    k.restart()
    r = k.execute(None, "print('y' in globals())", mode="query")
    assert r["console"] == [["stdout", "False\n"]], r
    info = k.get_info()
    assert info["lang"].startswith("python"), info
    stats = k.destroy()
    print("OK", sorted(stats["stats"]))
'''
    out = client_py(code)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout and "cpu_used" in out.stdout


def test_agent_restart_keeps_sessions(bai: Run, cluster: Cluster) -> None:
    assert bai("run", "-t", "e2e-survivor", "python", "-c", "z = 5").returncode == 0
    cluster.stop_process("agent")
    cluster.start_agent()
    out = bai("run", "-t", "e2e-survivor", "python", "-c", "print(z * 2)")
    assert out.returncode == 0, out.stderr
    assert "10" in out.stdout
    assert bai("terminate", "e2e-survivor").returncode == 0
