"""Batch mode, files and conventions with the official client 18.12.3 on a real cluster."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e

MAIN_C = '#include <stdio.h>\nint twice(int);\nint main(void) {\n' \
         '  printf("twice 21 is %d\\n", twice(21));\n  return 0;\n}\n'
HELPER_C = 'int twice(int x) { return 2 * x; }\n'


def _sources(tmp_path: Path, makefile: bool = False) -> list[str]:
    (tmp_path / "main.c").write_text(MAIN_C)
    (tmp_path / "helper.c").write_text(HELPER_C)
    names = ["main.c", "helper.c"]
    if makefile:
        (tmp_path / "Makefile").write_text("main: main.c helper.c\n\tgcc -o main main.c helper.c\n")
        names.append("Makefile")
    return [str(tmp_path / n) for n in names]


def test_multi_file_c_build(bai: Run, tmp_path: Path, cluster: Cluster) -> None:
    files = _sources(tmp_path)
    out = bai("run", "--rm", "--basedir", str(tmp_path), "python", *files,
              "--build", "gcc -o main main.c helper.c", "--exec", "./main")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "twice 21 is 42" in out.stdout
    assert cluster.containers() == []


def test_build_star_uses_the_image_default(bai: Run, tmp_path: Path) -> None:
    files = _sources(tmp_path, makefile=True)
    out = bai("run", "--rm", "--basedir", str(tmp_path), "python", *files,
              "--build", "*", "--exec", "./main")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "twice 21 is 42" in out.stdout


def test_query_mode_input(bai: Run) -> None:
    out = bai("run", "--rm", "python", "-c",
              "a = input('first? ')\nb = input('second? ')\nprint('got', a, b)",
              input="one\ntwo\n")
    assert out.returncode == 0, out.stderr
    assert "got one two" in out.stdout


def test_long_loop_arrives_in_continued_chunks(client_py: Run) -> None:
    code = r'''
from ai.backend.client.session import Session
with Session() as s:
    k = s.Kernel.get_or_create("python", client_token="e2e-loop")
    src = "import time\nfor i in range(10):\n    print('tick', i, flush=True)\n    time.sleep(0.5)"
    r = k.execute(None, src, mode="query")
    statuses, out = [r["status"]], "".join(d for t, d in r["console"] if t == "stdout")
    while r["status"] == "continued":
        r = k.execute(r["runId"], "", mode="continue")
        statuses.append(r["status"])
        out += "".join(d for t, d in r["console"] if t == "stdout")
    k.destroy()
    print("CHUNKS", statuses.count("continued"), statuses[-1])
    print("TICKS", out.count("tick"))
'''
    out = client_py(code)
    assert out.returncode == 0, out.stdout + out.stderr
    chunks = int(out.stdout.split("CHUNKS ")[1].split()[0])
    assert chunks >= 2 and f"CHUNKS {chunks} finished" in out.stdout, out.stdout
    assert "TICKS 10" in out.stdout


def test_upload_ls_download_logs(bai: Run, client_py: Run, tmp_path: Path) -> None:
    src = tmp_path / "up"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.txt").write_text("payload 123\n")
    assert bai("run", "-t", "e2e-files", "python", "-c", "print(1)").returncode == 0
    try:
        up = client_py(f"""
from ai.backend.client.session import Session
with Session() as s:
    r = s.Kernel("e2e-files").upload([{str(src / "sub" / "data.txt")!r}], basedir={str(src)!r})
    print("STATUS", r.status)
""")
        assert "STATUS 204" in up.stdout, up.stdout + up.stderr
        ls = bai("ls", "e2e-files", "/home/work/sub")
        assert ls.returncode == 0, ls.stdout + ls.stderr
        assert "data.txt" in ls.stdout and "/home/work/sub" in ls.stdout
        dest = tmp_path / "down"
        dest.mkdir()
        got = bai("download", "e2e-files", "sub/data.txt", "--dest", str(dest))
        assert got.returncode == 0, got.stdout + got.stderr
        assert (dest / "data.txt").read_text() == "payload 123\n"
        logs = bai("logs", "e2e-files")
        assert logs.returncode == 0 and "End of logs" in logs.stdout + logs.stderr
    finally:
        bai("terminate", "e2e-files")


def test_rate_limit_headers(client_py: Run) -> None:
    code = r'''
from ai.backend.client.session import Session
from ai.backend.client.request import Request
with Session() as s:
    for path in ("/", "/v4"):
        with Request(s, "GET", path).fetch() as resp:
            h = resp.headers
            print(path, resp.status, h.get("X-RateLimit-Limit"),
                  h.get("X-RateLimit-Remaining"), h.get("X-RateLimit-Window"))
'''
    out = client_py(code)
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout + out.stderr
    for line in lines:
        path, status, limit, remaining, window = line.split()
        assert limit.isdigit() and remaining.isdigit() and window == "900", line


def test_execute_statuses_through_the_sdk(client_py: Run) -> None:
    code = r'''
from ai.backend.client.session import Session
def drain(k, r):
    seen = [r["status"]]
    while r["status"] not in ("finished", "exec-timeout", "waiting-input"):
        r = k.execute(r["runId"], "", mode="continue")
        seen.append(r["status"])
    return r, seen
with Session() as s:
    k = s.Kernel.get_or_create("python", client_token="e2e-status")
    r = k.execute(None, "", mode="batch",
                  opts={"clean": "true", "build": "gcc nosuch.c", "exec": "./a.out"})
    assert r["runId"], r
    r, seen = drain(k, r)
    print("BATCH", ",".join(seen), r["exitCode"])
    r = k.execute(None, "import getpass\nprint('pw', len(getpass.getpass('secret? ')))",
                  mode="query")
    r, seen = drain(k, r)
    print("INPUT", r["status"], dict(r["options"]))
    r = k.execute(r["runId"], "hunter2", mode="input")
    r, seen = drain(k, r)
    print("AFTER", r["status"], "".join(d for t, d in r["console"] if t == "stdout").strip())
    r = k.execute(None, "print('x' * 600000)", mode="query")
    r, seen = drain(k, r)
    text = "".join(d for t, d in r["console"] if t == "stdout")
    note = "".join(d for t, d in r["console"] if t == "stderr")
    print("CAP", len(text) <= 524288, "dropped" in note)
    k.destroy()
'''
    out = client_py(code)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BATCH clean-finished,build-finished,finished 127" in out.stdout, out.stdout
    assert "INPUT waiting-input {'is_password': True}" in out.stdout, out.stdout
    assert "AFTER finished pw 7" in out.stdout, out.stdout
    assert "CAP True True" in out.stdout, out.stdout


def test_overlapping_runs_are_served_first_in_first_out(client_py: Run) -> None:
    code = r'''
from ai.backend.client.session import Session
with Session() as s:
    k = s.Kernel.get_or_create("python", client_token="e2e-fifo")
    a = k.execute("run-a", "import time\nfor i in range(6):\n    print('a', i); time.sleep(1)",
                  mode="query")
    # run B arrives while A is still running: it waits its turn
    b = k.execute("run-b", "print('b ran')", mode="query")
    print("B-FIRST", b["status"], b["console"])
    while a["status"] != "finished":
        a = k.execute("run-a", "", mode="continue")
    while b["status"] != "finished":
        b = k.execute("run-b", "", mode="continue")
    print("B-LAST", b["console"])
    k.destroy()
'''
    out = client_py(code)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "B-FIRST continued []" in out.stdout, out.stdout
    assert "B-LAST [['stdout', 'b ran\\n']]" in out.stdout, out.stdout
