"""Host binding: a request must name, in its ``Host`` header, a host this manager
serves — checked for every route before any signature work (docs/api.md).

``api.allowed_hosts`` lists them (``name:port``, or ``name`` meaning port 80). When it
is empty, the allowed hosts are the address and port the connection arrived on (so
``127.0.0.1:8081``), plus ``localhost:<port>`` on a loopback address and
``<api.host>:<port>`` when ``api.host`` is a name. Anything else answers 400
``host-not-allowed``: a signature made for another host, or a DNS-rebinding page,
never reaches the keypair lookup.
"""
from __future__ import annotations

import functools
import ipaddress
from typing import Any

from aiohttp import web

from common.errors import HostNotAllowed
from manager.api.keys import CONFIG


def _normalise(host: str) -> str:
    host = host.strip().lower()
    return host[:-3] if host.endswith(":80") else host


@functools.lru_cache(maxsize=256)
def _local_hosts(ip: str, port: int, configured: str) -> frozenset[str]:
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return frozenset()
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    names = {f"[{addr}]" if addr.version == 6 else str(addr)}
    if addr.is_loopback:
        names.add("localhost")
    try:
        ipaddress.ip_address(configured)
    except ValueError:
        names.add(configured.lower())  # api.host is a name
    return frozenset(_normalise(f"{n}:{port}") for n in names)


@functools.lru_cache(maxsize=16)
def _configured(hosts: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_normalise(h) for h in hosts)


def allowed_hosts(request: web.Request) -> frozenset[str]:
    api = request.app[CONFIG].api
    if api.allowed_hosts:
        return _configured(tuple(api.allowed_hosts))
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return frozenset()
    return _local_hosts(str(sockname[0]), int(sockname[1]), api.host)


@web.middleware
async def host_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    host = request.headers.get("Host", "")
    if _normalise(host) not in allowed_hosts(request):
        raise HostNotAllowed(f"Host {host[:100]!r} is not served here; configure "
                             "api.allowed_hosts to add it")
    return await handler(request)
