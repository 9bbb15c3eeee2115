"""Process-wide logging setup with secret redaction.

Every handler gets ``RedactingFilter``: secret keys, signatures, join tokens and
passwords are masked before a record is formatted, whatever code logged them.
"""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

_PATTERNS = [
    re.compile(r"(?i)(secret[_-]?key|password|token|signature)(['\"]?\s*[:=]\s*['\"]?)([^\s'\",}]+)"),
    re.compile(r"(credential=[A-Za-z0-9]+:)([0-9a-f]+)"),
    re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)"),  # URL passwords
]


def redact(text: str) -> str:
    text = _PATTERNS[0].sub(lambda m: m.group(1) + m.group(2) + "***", text)
    text = _PATTERNS[2].sub(lambda m: m.group(1) + "***" + m.group(3), text)
    return _PATTERNS[1].sub(lambda m: m.group(1) + "***", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(level: str = "INFO", file: Path | None = None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(file) if file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
