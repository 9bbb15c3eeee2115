"""Shared test configuration.

Tiers: tests/unit (no services), tests/integration (real PostgreSQL, Redis, Docker,
ZeroMQ), tests/e2e (a whole cluster driven by real clients). `scripts/dev test`
starts the services and exports KRAKEN_TEST_PG_URL / KRAKEN_TEST_REDIS_URL.
"""

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under `scripts/dev test` (KRAKEN_NO_SKIP=1) a skipped test is a failure: a
    missing service or image must not let the suite pass while testing nothing. The one
    exceptions are tests marked ``gpu``: they need NVIDIA hardware, which CI machines do
    not have (run them on a GPU host: `pytest -m gpu`), and ``torch``: the project venv
    has no PyTorch (the model images do; tests/integration/models runs those checks
    inside the image)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("KRAKEN_NO_SKIP") == "1" \
            and item.get_closest_marker("gpu") is None \
            and item.get_closest_marker("torch") is None:
        report.outcome = "failed"
        report.longrepr = f"skipped under KRAKEN_NO_SKIP=1: {report.longrepr}"
