"""The browser terminal (/console/sessions/<name>/terminal) in real headless Chromium:
signed in to the console, a shell in a python session echoes, and `stty size` follows the
window; signed out, the page says so; through the official client's `backend.ai proxy`
(no console session, the proxy signs the WebSocket) it works too."""
from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import js_errors, sign_in, wait
from tests.e2e.cluster import Cluster, free_port
from tests.e2e.conftest import CLIENT_VENV, Run

pytestmark = pytest.mark.e2e

TOKEN = "term-e2e"
ROWS_JS = ("return Array.from(document.querySelectorAll('.xterm-rows > div'))"
           ".map(function (row) { return row.textContent; }).join('\\n')")
SIZE_JS = "return [window.krakenTerminal.rows, window.krakenTerminal.cols]"


def screen(driver: Any) -> str:
    """The terminal's rendered text, as the user sees it."""
    return str(driver.execute_script(ROWS_JS)).replace("\xa0", " ")


def type_line(driver: Any, line: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys(line + Keys.ENTER)


def seen(driver: Any, pattern: str) -> re.Match[str] | None:
    return re.search(pattern, screen(driver), re.MULTILINE)


def connected(driver: Any) -> bool:
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, "state").text == "connected"


def stty_size(driver: Any, marker: str) -> tuple[int, int]:
    """Run `stty size` in the shell; the rows and columns it printed."""
    type_line(driver, f"echo {marker} $(stty size)")
    found = wait(driver, lambda d: seen(d, rf"^{marker} (\d+) (\d+)\s*$"))
    return int(found.group(1)), int(found.group(2))


@pytest.fixture
def session(bai: Run) -> Iterator[str]:
    made = bai("run", "-t", TOKEN, "python", "-c", "x = 1")
    assert made.returncode == 0, made.stderr
    try:
        yield TOKEN
    finally:
        bai("terminate", TOKEN)


def test_terminal_echoes_and_follows_the_window(browser: Any, cluster: Cluster,
                                                session: str) -> None:
    browser.set_window_size(1200, 800)
    sign_in(browser, cluster)
    js_errors(browser)  # only the terminal page's own errors count below
    browser.get(f"{cluster.endpoint}/console/sessions/{session}/terminal")
    wait(browser, connected)
    type_line(browser, "echo $((6*7))")
    wait(browser, lambda d: seen(d, r"^42\s*$"))  # the output line, not the echoed command
    type_line(browser, "echo h\u00e9llo w\u00f6rld \u2192 \u03bb")  # UTF-8 both ways
    wait(browser, lambda d: seen(d, "^h\u00e9llo w\u00f6rld \u2192 \u03bb\\s*$"))

    before = stty_size(browser, "S1")
    assert before == tuple(browser.execute_script(SIZE_JS))  # the pty has the page's size
    browser.set_window_size(700, 450)
    wait(browser, lambda d: tuple(d.execute_script(SIZE_JS)) != before)
    after = stty_size(browser, "S2")
    assert after == tuple(browser.execute_script(SIZE_JS))
    assert after[0] < before[0] and after[1] < before[1]
    assert js_errors(browser) == []


def test_terminal_from_the_console_reattaches_after_a_drop(browser: Any, cluster: Cluster,
                                                            session: str) -> None:
    from selenium.webdriver.common.by import By
    sign_in(browser, cluster)
    # opened from the console's bar, in a new tab
    browser.find_element(By.ID, "term-session").send_keys(session)
    browser.find_element(By.CSS_SELECTOR, "#term-form button").click()
    console_tab = browser.current_window_handle
    wait(browser, lambda d: len(d.window_handles) == 2)
    browser.switch_to.window(next(h for h in browser.window_handles if h != console_tab))
    assert browser.current_url.endswith(f"/console/sessions/{session}/terminal")
    wait(browser, connected)
    type_line(browser, "K=kra; echo ${K}ken")
    wait(browser, lambda d: seen(d, r"^kraken\s*$"))
    browser.execute_script("window.krakenTerminalSocket().close()")  # the connection drops
    wait(browser, lambda d: seen(d, r"connection closed"))
    browser.find_element(By.ID, "reconnect").click()
    wait(browser, connected)
    # the screen was cleared and the server replayed the shell's recent output
    wait(browser, lambda d: seen(d, r"^kraken\s*$") and not seen(d, r"connection closed"))
    type_line(browser, "echo ${K}2")
    wait(browser, lambda d: seen(d, r"^kra2\s*$"))  # the same shell: K is still set


def test_terminal_says_when_its_session_ends(browser: Any, bai: Run, cluster: Cluster,
                                             session: str) -> None:
    from selenium.webdriver.common.by import By
    sign_in(browser, cluster)
    browser.get(f"{cluster.endpoint}/console/sessions/{session}/terminal")
    wait(browser, connected)
    assert bai("terminate", session).returncode == 0
    wait(browser, lambda d: seen(d, r"connection closed"))
    assert browser.find_element(By.ID, "state").text == "disconnected"
    browser.find_element(By.ID, "reconnect").click()  # the session is gone: refused
    notice = wait(browser, lambda d: d.find_element(By.ID, "notice").is_displayed()
                  and d.find_element(By.ID, "notice"))
    assert "could not be opened" in notice.text and session in notice.text


def test_terminal_page_signed_out_points_to_the_console(browser: Any, cluster: Cluster,
                                                        session: str) -> None:
    from selenium.webdriver.common.by import By
    browser.get(f"{cluster.endpoint}/console/sessions/{session}/terminal")
    notice = wait(browser, lambda d: d.find_element(By.ID, "notice").is_displayed()
                  and d.find_element(By.ID, "notice"))
    assert "not signed in" in notice.text
    assert notice.find_element(By.TAG_NAME, "a").get_attribute("href").endswith("/console")
    assert browser.find_element(By.ID, "state").text == "disconnected"
    assert browser.find_element(By.ID, "reconnect").is_displayed()


@contextlib.contextmanager
def official_proxy(cluster: Cluster) -> Iterator[str]:
    """`backend.ai proxy` on a free port: unauthenticated locally, it signs every request."""
    port = free_port()
    proc = subprocess.Popen([str(CLIENT_VENV / "bin" / "backend.ai"), "proxy", "--bind",
                             "127.0.0.1", "-p", str(port)], env=cluster.client_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        cluster.wait(lambda: cluster.api_up(url), 30, "backend.ai proxy")
        yield url
    finally:  # it waits for open WebSockets on SIGTERM: kill it if it takes long
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_terminal_through_the_official_proxy(browser: Any, cluster: Cluster,
                                             session: str) -> None:
    with official_proxy(cluster) as url:
        browser.get(f"{url}/console/sessions/{session}/terminal")
        wait(browser, connected)
        type_line(browser, "echo $((6*7))")
        wait(browser, lambda d: seen(d, r"^42\s*$"))
