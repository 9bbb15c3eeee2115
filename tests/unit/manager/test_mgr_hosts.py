"""Host binding: which Host headers a manager accepts by default and when configured."""
from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from common.errors import HostNotAllowed
from manager.api.hosts import allowed_hosts, host_middleware
from manager.api.keys import CONFIG
from manager.config import ManagerConfig


class _Transport:
    def __init__(self, sockname: tuple[str, int]) -> None:
        self._sockname = sockname

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._sockname if name == "sockname" else default

    def is_closing(self) -> bool:
        return False


def _request(host_header: str, sockname: tuple[str, int], **api: Any) -> web.Request:
    app = web.Application()
    app[CONFIG] = ManagerConfig.model_validate({"api": api})
    return make_mocked_request("GET", "/", headers={"Host": host_header}, app=app,
                               transport=_Transport(sockname))


def test_default_hosts_come_from_the_address_the_request_reached() -> None:
    assert allowed_hosts(_request("x", ("127.0.0.1", 8081))) == {
        "127.0.0.1:8081", "localhost:8081"}
    assert allowed_hosts(_request("x", ("10.1.2.3", 80))) == {"10.1.2.3"}
    assert allowed_hosts(_request("x", ("::1", 8081, 0, 0))) == {"[::1]:8081",
                                                                 "localhost:8081"}
    named = allowed_hosts(_request("x", ("10.1.2.3", 8081), host="kraken.lan"))
    assert named == {"10.1.2.3:8081", "kraken.lan:8081"}


def test_configured_hosts_replace_the_default() -> None:
    req = _request("x", ("127.0.0.1", 8081), allowed_hosts=["API.Example.com:443", "b:80"])
    assert allowed_hosts(req) == {"api.example.com:443", "b"}


@pytest.mark.parametrize("host,ok", [
    ("127.0.0.1:8081", True), ("LOCALHOST:8081", True), ("127.0.0.1:8082", False),
    ("evil.example:8081", False), ("", False), ("127.0.0.1", False),
])
async def test_middleware_refuses_other_hosts(host: str, ok: bool) -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    req = _request(host, ("127.0.0.1", 8081))
    if ok:
        assert (await host_middleware(req, handler)).status == 200
    else:
        with pytest.raises(HostNotAllowed):
            await host_middleware(req, handler)
