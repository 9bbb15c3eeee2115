"""Query mode of the runner, driven over its real ZeroMQ sockets."""
from __future__ import annotations

from common.codec import Message
from common.msg_runner import (
    RUNNER_PROTOCOL,
    Complete,
    Completions,
    ConsoleOutput,
    FeedInput,
    Interrupt,
    Ping,
    RunFinished,
    RunQuery,
    WaitingInput,
)
from tests.unit.kernels.runner_client import Run, RunnerProcess


def run_code(runner: RunnerProcess, run_id: str, code: str) -> Run:
    runner.client.send(RunQuery(run_id=run_id, code=code))
    return runner.client.collect(runner.client.finish_of(run_id))


def test_ready_announces_protocol_and_features(runner: RunnerProcess) -> None:
    assert runner.ready.protocol == RUNNER_PROTOCOL.version
    assert {"query", "batch", "pty"} <= set(runner.ready.features)


def test_print_gives_stdout_and_exit_zero(runner: RunnerProcess) -> None:
    run = run_code(runner, "r1", "print(1)")
    assert run.items == [["stdout", "1\n"]]
    assert run.finished == [RunFinished(run_id="r1", phase="exec", exit_code=0)]


def test_stdout_and_stderr_keep_their_order(runner: RunnerProcess) -> None:
    code = ("import sys\nprint('a')\nprint('b', file=sys.stderr)\n"
            "print('c')\nsys.stderr.write('d\\n')\nprint('e')")
    run = run_code(runner, "r", code)
    assert run.items == [["stdout", "a\n"], ["stderr", "b\n"], ["stdout", "c\n"],
                         ["stderr", "d\n"], ["stdout", "e\n"]]


def test_exception_prints_traceback_of_input(runner: RunnerProcess) -> None:
    run = run_code(runner, "r", "x = 1\n1 / 0\n")
    err = run.text("stderr")
    assert err.startswith("Traceback (most recent call last):")
    assert 'File "<input>", line 2' in err and "1 / 0" in err
    assert "ZeroDivisionError: division by zero" in err
    assert "kernels" not in err  # no runner frames leak into the user's traceback
    assert run.finished[0].exit_code == 0


def test_syntax_error_is_reported(runner: RunnerProcess) -> None:
    run = run_code(runner, "r", "def (:\n")
    assert "SyntaxError" in run.text("stderr")
    assert run_code(runner, "r2", "print('still fine')").text("stdout") == "still fine\n"


def test_state_survives_between_runs(runner: RunnerProcess) -> None:
    run_code(runner, "r1", "counter = 41\ndef bump():\n    global counter\n    counter += 1\n")
    assert run_code(runner, "r2", "bump(); print(counter)").text("stdout") == "42\n"


def test_input_round_trip(runner: RunnerProcess) -> None:
    waits: list[WaitingInput] = []
    order: list[str] = []

    def on(msg: Message) -> None:
        if isinstance(msg, ConsoleOutput):
            order.extend(kind for kind, _ in msg.items)
        if isinstance(msg, WaitingInput):
            waits.append(msg)
            order.append("waiting")
            runner.client.send(FeedInput(run_id=msg.run_id, text="Kraken\n"))

    runner.client.send(RunQuery(run_id="in", code="name = input('Your name? ')\nprint('hi', name)"))
    run = runner.client.collect(runner.client.finish_of("in"), on=on)
    assert waits == [WaitingInput(run_id="in", prompt="Your name? ", is_password=False)]
    assert order[:2] == ["stdout", "waiting"]  # the prompt is shown before the wait
    assert run.text("stdout") == "Your name? hi Kraken\n"


def test_getpass_asks_for_a_password(runner: RunnerProcess) -> None:
    waits: list[WaitingInput] = []

    def on(msg: Message) -> None:
        if isinstance(msg, WaitingInput):
            waits.append(msg)
            runner.client.send(FeedInput(run_id=msg.run_id, text="s3cret"))

    code = "import getpass\npw = getpass.getpass('PIN: ')\nprint(len(pw))"
    runner.client.send(RunQuery(run_id="pw", code=code))
    run = runner.client.collect(runner.client.finish_of("pw"), on=on)
    assert [w.is_password for w in waits] == [True]
    assert waits[0].prompt == "PIN: "
    assert run.text("stdout").endswith("6\n")


def test_interrupt_stops_a_sleep_loop_and_runner_stays_usable(
        runner: RunnerProcess) -> None:
    code = "import time\nprint('started', flush=True)\nwhile True:\n    time.sleep(1)\n"
    runner.client.send(RunQuery(run_id="loop", code=code))
    started = runner.client.collect(lambda m: isinstance(m, ConsoleOutput)
                                    and m.items[-1][1].endswith("\n"))
    assert started.text("stdout") == "started\n"
    ack = runner.client.control(Interrupt())
    assert ack.ok
    run = runner.client.collect(runner.client.finish_of("loop"))
    assert "KeyboardInterrupt" in run.text("stderr")
    assert run_code(runner, "after", "print('alive')").text("stdout") == "alive\n"


def test_interrupt_when_idle_is_harmless(runner: RunnerProcess) -> None:
    assert runner.client.control(Interrupt()).detail == "nothing running"
    assert runner.client.control(Ping()).ok
    assert run_code(runner, "r", "print(2)").text("stdout") == "2\n"


def test_completion_against_user_globals(runner: RunnerProcess) -> None:
    run_code(runner, "r", "import os\nkraken_value = 3")
    runner.client.send(Complete(req_id=7, code="pri"))
    reply = runner.client.recv()
    assert isinstance(reply, Completions) and reply.req_id == 7
    assert "print" in reply.items
    runner.client.send(Complete(req_id=8, code="x = kraken_v"))
    assert runner.client.recv() == Completions(req_id=8, items=["kraken_value"])
    runner.client.send(Complete(req_id=9, code="os.pat"))
    reply = runner.client.recv()
    assert isinstance(reply, Completions) and "os.path" in reply.items


def test_media_helper_emits_html_items(runner: RunnerProcess) -> None:
    code = "from kernels.runner import media\nmedia.html('<b>hi</b>')\nmedia.show('image/png', b'\\x89P')"
    run = run_code(runner, "m", code)
    assert run.items == [["html", "<b>hi</b>"], ["media", ["image/png", "iVA="]]]


def test_garbage_frames_are_dropped(runner: RunnerProcess) -> None:
    runner.client.input.send(b"\xc1 not msgpack")
    runner.client.send(RunFinished(run_id="x", phase="exec", exit_code=0))  # wrong direction
    assert run_code(runner, "ok", "print('ok')").text("stdout") == "ok\n"
