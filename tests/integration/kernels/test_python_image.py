"""The kraken/python image, built from Debian packages, runs the runner in a container."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import zmq

from common.msg_runner import RunBatch, RunnerReady, RunQuery
from jail.policy import KERNEL_GID, KERNEL_UID
from kernels import build
from tests.integration.kernels.conftest import Container, docker
from tests.unit.kernels.runner_client import RunnerClient

pytestmark = pytest.mark.integration


@pytest.fixture
def client(kernel_container: Container) -> Iterator[RunnerClient]:
    ctx = zmq.Context()
    try:
        yield RunnerClient(ctx, 2000, host=kernel_container.ip)
    finally:
        ctx.destroy(linger=0)


def test_hello_from_a_container(client: RunnerClient) -> None:
    ready = client.recv()
    assert isinstance(ready, RunnerReady) and "query" in ready.features
    client.send(RunQuery(run_id="h", code="print('hello')"))
    run = client.collect(client.finish_of("h"))
    assert run.items == [["stdout", "hello\n"]]
    assert run.finished[0].exit_code == 0


def test_code_runs_as_the_work_user_in_its_home(client: RunnerClient) -> None:
    client.recv()
    client.send(RunQuery(run_id="u", code="import os, pwd\n"
                         "print(os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name,"
                         " os.getcwd())"))
    run = client.collect(client.finish_of("u"))
    assert run.text("stdout") == "1000 1000 work /home/work\n"


def test_c_batch_build_works_offline(client: RunnerClient) -> None:
    client.recv()
    client.send(RunBatch(run_id="c", build="printf 'int main(void){return 7;}' > m.c && "
                         "gcc -o main m.c", exec="./main"))
    run = client.collect(client.finish_of("c"))
    assert [(f.phase, f.exit_code) for f in run.finished] == [("build", 0), ("exec", 7)]


def test_image_labels_and_recipe_hash(python_image: str) -> None:
    config = json.loads(docker("image", "inspect", python_image))[0]["Config"]
    labels = config["Labels"]
    assert labels["ai.backend.maxcores"] == "4"
    assert labels["ai.backend.maxmem"] == "2g"
    assert labels["ai.backend.timeout"] == "0"
    assert labels["ai.backend.mode"] == "query+pty"
    assert labels["ai.backend.kernelspec"] == "1"
    assert "query" in labels["ai.backend.features"].split()
    assert labels["ai.backend.envs.corecount"] == "OPENBLAS_NUM_THREADS,OMP_NUM_THREADS"
    assert labels[build.HASH_LABEL] == build.python_context().digest(
        build.image_hash(build.BASE_IMAGE) or "")
    assert config["User"] == "work"
    assert json.loads(docker("image", "inspect", "kraken/python:3.11"))[0]["Id"] == \
        json.loads(docker("image", "inspect", python_image))[0]["Id"]


def test_rebuild_is_skipped_when_the_recipe_is_unchanged(
        python_image: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert build.main(["python"]) == 0
    out = capsys.readouterr().out
    assert "kraken/base:bookworm is current" in out
    assert "kraken/python:latest is current" in out


def test_the_session_uid_has_a_name_and_the_home(python_image: str) -> None:
    """The agent starts containers as jail.uid:jail.gid (default KERNEL_UID:KERNEL_GID)."""
    out = docker("run", "--rm", "--user", f"{KERNEL_UID}:{KERNEL_GID}", python_image,
                 "sh", "-c", "whoami && id -gn && echo ~ && python3 -c 'import getpass, os; "
                 "print(getpass.getuser(), os.path.expanduser(\"~\"))'")
    assert out.split() == ["work", "work", "/home/work", "work", "/home/work"]


def test_python_and_python3_both_run(python_image: str) -> None:
    """``python main.py`` works as well as ``python3 main.py``, as the jailed session uid."""
    out = docker("run", "--rm", "--user", f"{KERNEL_UID}:{KERNEL_GID}", python_image,
                 "sh", "-c", "python -c 'import sys; print(sys.version_info[0])' && "
                 "python3 -c 'import sys; print(sys.version_info[0])' && "
                 "echo 'print(6 * 7)' > /tmp/main.py && python /tmp/main.py")
    assert out.split() == ["3", "3", "42"]
