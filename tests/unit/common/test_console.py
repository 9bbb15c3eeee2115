"""The one rule for console output held in memory (common/console.py)."""
from __future__ import annotations

from common.console import ConsoleWindow, cap_console, data_size, dropped_note
from common.limits import MAX_STREAM_CHARS


def test_data_size_counts_utf8_bytes_and_survives_deep_nesting() -> None:
    assert data_size("abc") == 3 and data_size("é") == 2 and data_size(b"\0" * 7) == 7
    assert data_size(["text/plain", "ab"]) == 1 + 10 + 2
    deep: list = []
    node = deep
    for _ in range(100_000):  # deeper than any recursion limit
        node.append([])
        node = node[0]
    assert data_size(deep) == 100_001


def test_text_is_merged_and_capped_per_stream_per_call() -> None:
    window = ConsoleWindow()
    room = 10 * MAX_STREAM_CHARS
    for _ in range(3):
        room -= window.add(["stdout", "o" * (MAX_STREAM_CHARS // 2)], room)
    room -= window.add(["stderr", "e"], room)
    room -= window.add(["stdout", "late"], room)
    items = window.items()
    assert items[0] == ["stdout", "o" * MAX_STREAM_CHARS]
    assert items[1] == ["stderr", "e"]
    assert window.dropped == {"stdout": MAX_STREAM_CHARS // 2 + 4}
    assert items[-1][0] == "stderr" and "bytes of stdout" in items[-1][1]


def test_other_kinds_are_kept_or_dropped_whole_within_the_room() -> None:
    window = ConsoleWindow()
    assert window.add(["html", "x" * 100], 150) == 100
    assert window.add(["html", "y" * 100], 50) == 0
    assert window.add(["media", ["image/png", "z" * 10]], 50) > 0
    assert window.add(["stdout", "é" * 30], 20) == 10  # five 2-byte characters fit
    assert window.add("not an item", 10**6) == 0
    assert window.dropped == {"html": 100, "stdout": 50, "invalid": 11}
    assert [k for k, _ in window.items()] == ["html", "media", "stdout", "stderr"]


def test_cap_console_is_the_same_rule_for_a_whole_response() -> None:
    items = [["stdout", "a" * 10], ["html", "h" * 100], ["stdout", "b" * 10]]
    out, dropped = cap_console(items, 50, {"html": 5})
    assert out[0] == ["stdout", "a" * 10 + "b" * 10]  # the html between them was dropped
    assert dropped == {"html": 105} and out[-1] == dropped_note(dropped)
    same, none = cap_console(items, 10**6)
    assert none == {} and same == [["stdout", "a" * 10], ["html", "h" * 100],
                                   ["stdout", "b" * 10]]
