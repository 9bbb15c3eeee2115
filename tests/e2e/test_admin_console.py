"""The admin console in a real headless browser (Debian's chromium + chromedriver):
sign in with the cluster's admin keypair, run a compute_sessions query in GraphiQL,
see a session that exists."""
from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e

TOKEN = "gql-e2e"
QUERY = '{ compute_sessions(status: "RUNNING") { sess_id status lang } }'


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        pytest.fail("chromedriver missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, predicate: Any, timeout: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(predicate)


def test_console_signs_in_and_queries_sessions(browser: Any, bai: Run,
                                               cluster: Cluster) -> None:
    from selenium.webdriver.common.by import By

    made = bai("run", "-t", TOKEN, "python", "-c", "x=1")
    assert made.returncode == 0, made.stderr
    try:
        url = f"{cluster.endpoint}/console?query={urllib.parse.quote(QUERY)}"
        browser.get(url)
        _wait(browser, lambda d: d.find_element(By.ID, "access_key").is_displayed())
        browser.find_element(By.ID, "access_key").send_keys(cluster.access_key)
        browser.find_element(By.ID, "secret_key").send_keys(cluster.secret_key)
        browser.find_element(By.ID, "login-btn").click()
        button = _wait(browser, lambda d: d.find_element(By.CLASS_NAME,
                                                         "graphiql-execute-button"))
        assert browser.find_element(By.ID, "who").text == cluster.access_key
        names = {c["name"]: c for c in browser.get_cookies()}
        assert names["kraken_console"]["httpOnly"] is True
        button.click()
        result = _wait(browser, lambda d: TOKEN in d.find_element(
            By.CLASS_NAME, "result-window").text and d.find_element(
            By.CLASS_NAME, "result-window").text)
        assert '"status": "RUNNING"' in result
        assert browser.execute_script("return document.cookie").find("kraken_console") < 0
    finally:
        bai("terminate", TOKEN)
