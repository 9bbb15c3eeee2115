"""Batch mode, PTY streams and the runner's lifecycle, over its real sockets."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from common.msg_runner import (
    ConsoleOutput,
    ControlAck,
    Interrupt,
    Ping,
    PtyClose,
    PtyClosed,
    PtyInput,
    PtyOpen,
    PtyOutput,
    PtyResize,
    RunBatch,
    RunFinished,
    Shutdown,
)
from tests.unit.kernels.runner_client import Run, RunnerProcess


def batch(runner: RunnerProcess, run_id: str, **steps: str | None) -> Run:
    runner.client.send(RunBatch(run_id=run_id, **steps))
    return runner.client.collect(runner.client.finish_of(run_id))


def phases(run: Run) -> list[tuple[str, int]]:
    return [(f.phase, f.exit_code) for f in run.finished]


def test_clean_build_exec_in_the_work_dir(runner: RunnerProcess) -> None:
    (runner.workdir / "a.sh").write_text("echo out-$((6*7))\necho err >&2\nexit 3\n")
    (runner.workdir / "stale.o").write_text("x")
    run = batch(runner, "b", clean="rm -f stale.o", build="cp a.sh main.sh",
                exec="bash main.sh")
    assert phases(run) == [("clean", 0), ("build", 0), ("exec", 3)]
    assert run.text("stdout") == "out-42\n" and run.text("stderr") == "err\n"
    assert not (runner.workdir / "stale.o").exists()
    assert (runner.workdir / "main.sh").exists()


def test_failed_build_skips_exec_with_127(runner: RunnerProcess) -> None:
    run = batch(runner, "b", build="echo broken >&2; exit 2", exec="touch ran")
    assert phases(run) == [("build", 2), ("exec", 127)]
    assert "broken" in run.text("stderr")
    assert not (runner.workdir / "ran").exists()


def test_skipped_steps_and_image_defaults(runner: RunnerProcess) -> None:
    run = batch(runner, "d", clean="*", build="*", exec="*")
    assert phases(run) == [("build", 0), ("exec", 0)]  # no default clean: nothing to run
    assert run.text("stdout") == "default-build\ndefault-exec\n"
    run = batch(runner, "e", build="exit 4", exec=None)
    assert phases(run) == [("build", 4), ("exec", 4)]
    run = batch(runner, "f", clean="", build="", exec="echo only")
    assert phases(run) == [("exec", 0)] and run.text("stdout") == "only\n"


def test_batch_children_read_no_stdin_and_see_home(runner: RunnerProcess) -> None:
    run = batch(runner, "s", exec='cat; echo "home=$HOME pwd=$(pwd)"')
    assert run.text("stdout") == f"home={runner.workdir} pwd={runner.workdir}\n"


def test_interrupt_stops_a_batch_step(runner: RunnerProcess) -> None:
    runner.client.send(RunBatch(run_id="slow", exec="echo go; sleep 30"))
    first = runner.client.recv()  # bash writes "go\n" in one write()
    assert isinstance(first, ConsoleOutput) and first.items == [["stdout", "go\n"]]
    assert runner.client.control(Interrupt()).detail == "interrupted batch step"
    run = runner.client.collect(runner.client.finish_of("slow"))
    assert run.finished[-1].exit_code == 128 + signal.SIGINT


def pty_until(runner: RunnerProcess, stream_id: str, needle: bytes) -> bytes:
    """Collect a stream's output until ``needle`` appears in it; return the output."""
    seen = bytearray()

    def until(msg: object) -> bool:
        if isinstance(msg, PtyOutput) and msg.stream_id == stream_id:
            seen.extend(msg.data)
        return needle in seen

    runner.client.collect(until)
    return bytes(seen)


def test_pty_echo_resize_and_close(runner: RunnerProcess) -> None:
    client = runner.client
    client.send(PtyOpen(stream_id="t1", rows=30, cols=100))
    client.send(PtyInput(stream_id="t1", data=b"stty size; echo kraken-$((1+2))\n"))
    out = pty_until(runner, "t1", b"kraken-3\r\n")  # the echoed command shows $((1+2))
    assert b"30 100" in out
    client.send(PtyResize(stream_id="t1", rows=40, cols=120))
    client.send(PtyInput(stream_id="t1", data=b"stty size\n"))
    pty_until(runner, "t1", b"40 120")
    client.send(PtyClose(stream_id="t1"))
    closed = client.collect(lambda m: isinstance(m, PtyClosed))
    assert isinstance(closed.messages[-1], PtyClosed)
    assert closed.messages[-1].stream_id == "t1"


def test_pty_shell_exit_reports_code(runner: RunnerProcess) -> None:
    runner.client.send(PtyOpen(stream_id="t2"))
    runner.client.send(PtyInput(stream_id="t2", data=b"exit 5\n"))
    run = runner.client.collect(lambda m: isinstance(m, PtyClosed))
    assert run.messages[-1] == PtyClosed(stream_id="t2", exit_code=5)


def test_pty_open_with_a_bad_size_is_closed_at_once(runner: RunnerProcess) -> None:
    runner.client.send(PtyOpen(stream_id="bad", rows=0, cols=80))
    assert runner.client.recv() == PtyClosed(stream_id="bad", exit_code=127)


def test_shutdown_acks_and_exits_cleanly(runner: RunnerProcess) -> None:
    assert runner.client.control(Shutdown()).ok
    assert runner.proc.wait(10) == 0


def test_shutdown_while_code_runs(runner: RunnerProcess) -> None:
    runner.client.send(RunBatch(run_id="x", exec="echo go; sleep 30"))
    runner.client.recv()
    assert runner.client.control(Shutdown()).ok
    assert runner.proc.wait(10) == 0


def test_sigterm_exits_cleanly(runner: RunnerProcess) -> None:
    runner.client.send(RunFinished(run_id="ignored", phase="exec", exit_code=0))
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.proc.wait(10) == 0


def test_bad_port_setting_is_a_clear_error(tmp_path: Path) -> None:
    env = dict(os.environ, KRAKEN_RUNNER_PORT_BASE="abc", KRAKEN_RUNNER_WORKDIR=str(tmp_path),
               PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    proc = subprocess.run([sys.executable, "-m", "kernels.runner"], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2
    assert "KRAKEN_RUNNER_PORT_BASE is not a number: 'abc'" in proc.stderr


def test_pty_input_a_shell_does_not_read_never_stalls_the_runner(runner: RunnerProcess
                                                                  ) -> None:
    client = runner.client
    client.send(PtyOpen(stream_id="t3"))
    client.send(PtyInput(stream_id="t3", data=b"sleep 6; echo woke-$((2+3))\n"))
    pty_until(runner, "t3", b"sleep 6")  # the shell echoed the command and sleeps
    paste = b"".join(b"# pasted line %05d\n" % i for i in range(5000))  # ~100 kB
    client.send(PtyInput(stream_id="t3", data=paste))
    client.send(PtyInput(stream_id="t3", data=b"echo after-$((3+4))\n"))
    # the terminal holds ~4 kB; the rest waits in the runner, whose I/O thread goes on
    pong = client.control_reply(Ping(), timeout_ms=2000)  # not after the sleep
    assert isinstance(pong, ControlAck) and pong.ok
    out = pty_until(runner, "t3", b"after-7\r\n")
    assert b"woke-5" in out and b"# pasted line 04999" in out
