"""Headless Chromium for the e2e tests (Debian's chromium + chromedriver, Selenium)."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.cluster import Cluster


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        pytest.fail("chromedriver missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: Any, predicate: Callable[[Any], Any], timeout: float = 30) -> Any:
    """Poll ``predicate(driver)`` until it returns something truthy; return that."""
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(predicate)


def sign_in(driver: Any, cluster: Cluster, url: str = "") -> None:
    """Sign in on the console page (at ``url``, default ``/console``) with the admin keypair."""
    from selenium.webdriver.common.by import By
    driver.get(url or f"{cluster.endpoint}/console")
    wait(driver, lambda d: d.find_element(By.ID, "access_key").is_displayed())
    driver.find_element(By.ID, "access_key").send_keys(cluster.access_key)
    driver.find_element(By.ID, "secret_key").send_keys(cluster.secret_key)
    driver.find_element(By.ID, "login-btn").click()
    wait(driver, lambda d: d.find_element(By.ID, "who").text == cluster.access_key)


def js_errors(driver: Any) -> list[str]:
    """SEVERE entries of the browser console since the last call (script errors, CSP)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
