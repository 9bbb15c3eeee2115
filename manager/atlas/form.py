"""The fields of a job upload (seed 000 §3 and its tutorial): the seed spells them
several ways (``payLoad``, ``Payload``, ``payload``; ``Epoch``, ``epoch``), so each
accepted spelling maps to one canonical name; any other field is refused."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from common.errors import INVALID_REQUEST_SYNTAX, BadJobRequest

INVALID = INVALID_REQUEST_SYNTAX  # the seed's message for every bad request
SPELLINGS = {
    "payLoad": "payload", "Payload": "payload", "payload": "payload",
    "Epoch": "epoch", "epoch": "epoch",
    "itemName": "itemName", "resize": "resize", "clientId": "clientId",
    "deviceType": "deviceType", "fileName": "fileName",  # decal (§3.1): accepted, unused
}
FILE_FIELDS = frozenset({"payload"})
MAX_ITEM_NAME = 256
MAX_TEXT = 4096
CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
EPOCH_RANGE = (1, 100)
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def canonical(field: str | None) -> str:
    """The canonical name of a form field, or 400 for one the API does not take."""
    name = SPELLINGS.get(field or "")
    if name is None:
        raise BadJobRequest(f"unknown field {field!r}; the fields are itemName, Epoch (or "
                            "epoch), resize, clientId and payLoad (or Payload, payload)")
    return name


@dataclass(frozen=True, slots=True)
class JobFields:
    item_name: str
    epoch: int | None
    resize: bool
    client_id: str | None


def _epoch(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadJobRequest(f"'Epoch' must be an integer, not {raw[:20]!r}") from None
    if not EPOCH_RANGE[0] <= value <= EPOCH_RANGE[1]:
        raise BadJobRequest(f"'Epoch' must be between {EPOCH_RANGE[0]} and {EPOCH_RANGE[1]}")
    return value


def parse_bool(raw: str, what: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise BadJobRequest(f"'{what}' must be true/false or 1/0, not {raw[:20]!r}")


def _item_name(raw: str | None) -> str:
    name = (raw or "").strip()
    if not name:
        raise BadJobRequest("'itemName' is required")
    if len(name) > MAX_ITEM_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadJobRequest(f"'itemName' must be 1-{MAX_ITEM_NAME} printable characters")
    return name


def job_fields(text: dict[str, str], *, needs_epoch: bool) -> JobFields:
    """Validated text fields (canonical names → values)."""
    epoch = None
    if "epoch" in text:
        epoch = _epoch(text["epoch"])
    elif needs_epoch:
        raise BadJobRequest("'Epoch' is required (1-100)")
    client_id = text.get("clientId") or None
    if client_id is not None and not CLIENT_ID.match(client_id):
        raise BadJobRequest("'clientId' must be 1-128 of A-Z a-z 0-9 . _ : -")
    return JobFields(_item_name(text.get("itemName")), epoch,
                     parse_bool(text.get("resize", "false"), "resize"), client_id)


def request_json(job_id: str, model: str, fields: JobFields, input_name: str
                 ) -> dict[str, Any]:
    """The job's ``request.json`` (the contract of docs/atlas.md)."""
    return {"requestId": job_id, "model": model, "itemName": fields.item_name,
            "epoch": fields.epoch, "resize": fields.resize, "input": f"input/{input_name}"}
