"""The message size limit admits the largest legitimate message of each kind."""
from __future__ import annotations

import io
import tarfile

from common.limits import (
    MAX_CODE_CHARS,
    MAX_DOWNLOAD_BYTES,
    MAX_DOWNLOAD_FILES,
    MAX_MESSAGE_BYTES,
    MAX_OUTPUT_MESSAGE_BYTES,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_FILES,
    OUTPUT_DATA_BYTES,
)
from common.msg_agent import AGENT_PROTOCOL, Execute, FilesArchive, UploadFiles
from common.msg_runner import RUNNER_PROTOCOL, ConsoleOutput, RunQuery


def _tar(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f" * 200)
        info.size = size
        tar.addfile(info, io.BytesIO(b"\0" * size))
    return buf.getvalue()


def test_the_largest_legitimate_messages_fit() -> None:
    code = "\U0001f600" * MAX_CODE_CHARS  # 4 bytes per character in UTF-8
    kid = "00000000-0000-0000-0000-000000000000"
    for msg in (Execute(kernel_id=kid, run_id="r" * 64, mode="query", code=code),
                UploadFiles(kernel_id=kid, files=[{"path": "p" * 4096, "data":
                                                   b"\0" * MAX_UPLOAD_BYTES}] * MAX_UPLOAD_FILES),
                FilesArchive(archives=[_tar(MAX_DOWNLOAD_BYTES)] * MAX_DOWNLOAD_FILES)):
        assert len(AGENT_PROTOCOL.encode(msg, 1)) <= MAX_MESSAGE_BYTES, msg.msg_type
    assert len(RUNNER_PROTOCOL.encode(RunQuery(run_id="r" * 64, code=code))) <= MAX_MESSAGE_BYTES


def test_a_full_console_message_fits_the_output_limit() -> None:
    items = [["html", "x"]] * (OUTPUT_DATA_BYTES // 17)  # 1 byte + 16 counted per item
    msg = ConsoleOutput(run_id="r" * 64, items=items, dropped={"stdout": 2**40})
    assert len(RUNNER_PROTOCOL.encode(msg)) <= MAX_OUTPUT_MESSAGE_BYTES
