"""The ``ai.backend.service-ports`` label: what an image may declare, and what is refused."""
from __future__ import annotations

import pytest

from common.errors import InvalidAPIParameters, InvalidImageLabel, ServiceNotFound
from common.services import (
    LABEL_SERVICE_PORTS,
    ServicePort,
    find_service,
    parse_service_ports,
    service_ports,
)


def test_backend_ai_format_with_spaces_and_a_trailing_comma() -> None:
    assert parse_service_ports("jupyter:http:8090, redis:tcp:6379,") == (
        ServicePort("jupyter", "http", 8090), ServicePort("redis", "tcp", 6379))


def test_no_label_or_an_empty_one_declares_nothing() -> None:
    assert service_ports({}) == ()
    assert service_ports({LABEL_SERVICE_PORTS: "  "}) == ()


@pytest.mark.parametrize(("label", "says"), [
    ("jupyter:http", "is not name:protocol:port"),
    ("jupyter:http:8090:1", "is not name:protocol:port"),
    ("jupyter:ftp:8090", "protocol 'ftp'; supported: http, tcp"),
    ("jupyter:pty:8090", "protocol 'pty'"),
    ("jupyter:http:80", "cannot use port 80"),
    ("jupyter:http:2001", "cannot use port 2001"),
    ("jupyter:http:70000", "cannot use port 70000"),
    ("jupyter:http:eighty", "has port 'eighty'"),
    ("jupyter:http:-8090", "has port '-8090'"),
    ("vscode:http:[8180,8181]", "port lists"),
    ("../etc:http:8090", "bad service name '../etc'"),
    (":http:8090", "bad service name ''"),
    ("a:http:8090,a:tcp:8091", "duplicate names ['a']"),
    ("a:http:8090,b:tcp:8090", "duplicate ports ['8090']"),
])
def test_bad_labels_are_refused_with_what_is_wrong(label: str, says: str) -> None:
    with pytest.raises(InvalidImageLabel) as err:
        parse_service_ports(label)
    assert says in str(err.value)
    assert LABEL_SERVICE_PORTS in str(err.value)


def test_find_service_by_name() -> None:
    labels = {LABEL_SERVICE_PORTS: "jupyter:http:8090,db:tcp:5432"}
    assert find_service(labels, "db") == ServicePort("db", "tcp", 5432)
    with pytest.raises(ServiceNotFound) as err:
        find_service(labels, "vscode")
    assert err.value.status == 404 and err.value.slug == "service-not-found"
    for bad in (None, 3, "", "a/b", "x" * 65):
        with pytest.raises(InvalidAPIParameters):
            find_service(labels, bad)
