"""The services an image offers through the proxy: its ``ai.backend.service-ports`` label.

The label uses Backend.AI's format, ``name:protocol:port`` entries separated by commas::

    ai.backend.service-ports="jupyter:http:8090,redis:tcp:6379"

``protocol`` is ``http`` or ``tcp`` (both are proxied as raw bytes; the name tells a
client what it will speak). One port per service: Backend.AI's ``name:proto:[p1,p2]``
lists are refused, as are ports below 1024 and the runner's own ports (2000-2002).
A service's start command lives in the image, in ``SERVICE_DEFS_DIR/<name>.json``
(``{"argv": [...], "env": {...}}``); the runner starts it on the first proxy
connection (docs/agent.md).

Both the manager (to refuse an unknown service before the WebSocket upgrade) and the
agent (to find the port) read the label through ``service_ports`` / ``find_service``.
The runner imports this module too (``check_service_name``): it is copied into the
kernel image, so it needs nothing beyond the standard library and ``common.errors``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from common.errors import InvalidAPIParameters, InvalidImageLabel, ServiceNotFound
from common.msg_runner import CONTROL_PORT, INPUT_PORT, OUTPUT_PORT

LABEL_SERVICE_PORTS = "ai.backend.service-ports"
SERVICE_PROTOCOLS = ("http", "tcp")
SERVICE_DEFS_DIR = "/etc/kraken/services"
MIN_SERVICE_PORT = 1024
RESERVED_PORTS = frozenset({INPUT_PORT, OUTPUT_PORT, CONTROL_PORT})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PORT = re.compile(r"^[0-9]{1,5}$")


@dataclass(frozen=True)
class ServicePort:
    """One service of an image: where the proxy connects inside the container."""

    name: str
    protocol: str
    port: int


def check_service_name(name: object) -> str:
    """``name`` if it can name a service (and its definition file), else 400."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidAPIParameters(f"invalid service name {name!r}: letters, digits, '-' "
                                   "and '_', at most 64, starting with a letter or digit")
    return name


def _entry(text: str) -> ServicePort:
    parts = text.split(":")
    if len(parts) != 3:
        raise InvalidImageLabel(f"{LABEL_SERVICE_PORTS}: {text!r} is not name:protocol:port")
    name, protocol, port_text = (p.strip() for p in parts)
    if not _NAME.match(name):
        raise InvalidImageLabel(f"{LABEL_SERVICE_PORTS}: bad service name {name!r}")
    if protocol not in SERVICE_PROTOCOLS:
        raise InvalidImageLabel(f"{LABEL_SERVICE_PORTS}: service {name!r} has protocol "
                                f"{protocol!r}; supported: {', '.join(SERVICE_PROTOCOLS)}")
    if not _PORT.match(port_text):
        raise InvalidImageLabel(f"{LABEL_SERVICE_PORTS}: service {name!r} has port "
                                f"{port_text!r}; one port number per service")
    port = int(port_text)
    if not MIN_SERVICE_PORT <= port <= 65535 or port in RESERVED_PORTS:
        raise InvalidImageLabel(
            f"{LABEL_SERVICE_PORTS}: service {name!r} cannot use port {port} (allowed: "
            f"{MIN_SERVICE_PORT}-65535 except the runner's {sorted(RESERVED_PORTS)})")
    return ServicePort(name, protocol, port)


def parse_service_ports(label: str) -> tuple[ServicePort, ...]:
    """The services a ``ai.backend.service-ports`` value declares; ``InvalidImageLabel``
    for anything malformed, a duplicate name or a duplicate port."""
    if "[" in label:
        raise InvalidImageLabel(f"{LABEL_SERVICE_PORTS}: port lists ([p1,p2]) are not "
                                "supported; declare one port per service")
    services = tuple(_entry(e) for e in label.split(",") if e.strip())
    for attr in ("name", "port"):
        values = [getattr(s, attr) for s in services]
        dupes = sorted({str(v) for v in values if values.count(v) > 1})
        if dupes:
            raise InvalidImageLabel(f"{LABEL_SERVICE_PORTS}: duplicate {attr}s {dupes}")
    return services


def service_ports(labels: Mapping[str, str]) -> tuple[ServicePort, ...]:
    """The services of an image (or a container, which carries its image's labels)."""
    return parse_service_ports(labels.get(LABEL_SERVICE_PORTS, ""))


def find_service(labels: Mapping[str, str], name: object) -> ServicePort:
    """The service ``name`` of an image; ``ServiceNotFound`` (404) if it offers none."""
    wanted = check_service_name(name)
    for service in service_ports(labels):
        if service.name == wanted:
            return service
    raise ServiceNotFound(f"this session offers no service {wanted!r}")
