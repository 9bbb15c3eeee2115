"""The browser terminal page: served to anyone like the console page (it is static and
holds nothing), under the console's CSP, with every asset it loads served locally."""
from __future__ import annotations

import re

from tests.integration.manager.conftest import Harness

PAGE = "/console/sessions/{}/terminal"


async def test_terminal_page_and_its_assets(harness: Harness) -> None:
    page = await harness.client.get(PAGE.format("my-sess"))
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert page.headers["Cache-Control"] == "no-store"
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all(' src="/console/static/' in tag for tag in scripts)  # no inline JS
    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assets = [link for link in links if link.startswith("/console/static/")]
    assert len(assets) == 5 and set(links) - set(assets) == {"/console", "data:,"}  # no CDN
    for asset in assets:
        resp = await harness.client.get(asset)
        assert resp.status == 200, asset
        assert len(await resp.read()) > 100, asset
    assert (await harness.client.get(PAGE.format("a/b"))).status == 404
    assert (await harness.client.get("/console/sessions/x/terminal/y")).status == 404

