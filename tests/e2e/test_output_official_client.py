"""The official client 18.12.3 under output limits: it prints what was kept and the note
saying what was dropped, and ignores the html it does not render (issue 7)."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e

FLOOD = ("import sys\n"
         "from kernels.runner import media\n"
         "for _ in range(40): media.html('<p>' + 'h' * 1_000_000)\n"
         "sys.stdout.write('x' * 3_000_000)\n")


def test_a_flood_prints_what_was_kept_and_what_was_dropped(bai: Run) -> None:
    out = bai("run", "--rm", "python", "-c", FLOOD, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "output record (type: html)" in out.stdout and "x" * 1000 in out.stdout
    assert "output dropped" in out.stderr and "bytes of html" in out.stderr
    assert len(out.stdout) < 12_000_000  # at most a run's budget of html, 512 Ki of stdout
