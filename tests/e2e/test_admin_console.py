"""The admin console in a real headless browser (Debian's chromium + chromedriver):
sign in with the cluster's admin keypair, run a compute_sessions query in GraphiQL,
see a session that exists."""
from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from tests.e2e.browser import sign_in, wait
from tests.e2e.cluster import Cluster
from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e

TOKEN = "gql-e2e"
QUERY = '{ compute_sessions(status: "RUNNING") { sess_id status lang } }'


def test_console_signs_in_and_queries_sessions(browser: Any, bai: Run,
                                               cluster: Cluster) -> None:
    from selenium.webdriver.common.by import By

    made = bai("run", "-t", TOKEN, "python", "-c", "x=1")
    assert made.returncode == 0, made.stderr
    try:
        sign_in(browser, cluster, f"{cluster.endpoint}/console?query={urllib.parse.quote(QUERY)}")
        button = wait(browser, lambda d: d.find_element(By.CLASS_NAME,
                                                        "graphiql-execute-button"))
        names = {c["name"]: c for c in browser.get_cookies()}
        assert names["kraken_console"]["httpOnly"] is True
        button.click()
        result = wait(browser, lambda d: TOKEN in d.find_element(
            By.CLASS_NAME, "result-window").text and d.find_element(
            By.CLASS_NAME, "result-window").text)
        assert '"status": "RUNNING"' in result
        assert browser.execute_script("return document.cookie").find("kraken_console") < 0
    finally:
        bai("terminate", TOKEN)
