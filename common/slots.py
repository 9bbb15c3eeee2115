"""Resource slots: a mapping of slot name to an exact decimal amount.

Slot names: ``cpu`` (cores), ``mem`` (bytes), ``cuda.device`` (whole or fractional
GPUs). Arithmetic is exact (``Decimal``) so repeated allocate/free never drifts.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal

Number = int | float | str | Decimal

CPU = "cpu"
MEM = "mem"
GPU = "cuda.device"


def _dec(v: Number) -> Decimal:
    return v if isinstance(v, Decimal) else Decimal(str(v))


class ResourceSlot(Mapping[str, Decimal]):
    """An immutable slot → amount mapping with element-wise arithmetic."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Number] | None = None) -> None:
        self._data: dict[str, Decimal] = {k: _dec(v) for k, v in (data or {}).items()}

    def __getitem__(self, key: str) -> Decimal:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get_amount(self, key: str) -> Decimal:
        return self._data.get(key, Decimal(0))

    def __add__(self, other: Mapping[str, Number]) -> ResourceSlot:
        keys = set(self._data) | set(other)
        return ResourceSlot({k: self.get_amount(k) + _dec(other.get(k, 0)) for k in keys})

    def __sub__(self, other: Mapping[str, Number]) -> ResourceSlot:
        keys = set(self._data) | set(other)
        return ResourceSlot({k: self.get_amount(k) - _dec(other.get(k, 0)) for k in keys})

    def fits_in(self, capacity: Mapping[str, Number]) -> bool:
        """True when every requested amount is available in ``capacity``."""
        return all(v <= _dec(capacity.get(k, 0)) for k, v in self._data.items() if v > 0)

    def is_nonnegative(self) -> bool:
        return all(v >= 0 for v in self._data.values())

    def to_wire(self) -> dict[str, str]:
        """Decimals travel as strings so no precision is lost (seed 004 ``decimal``)."""
        return {k: str(v) for k, v in sorted(self._data.items())}

    @classmethod
    def from_wire(cls, data: Mapping[str, Number] | None) -> ResourceSlot:
        return cls(data or {})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        keys = set(self._data) | set(other)
        return all(self.get_amount(k) == _dec(other.get(k, 0)) for k in keys)

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, v) for k, v in self._data.items() if v)))

    def __repr__(self) -> str:
        return f"ResourceSlot({self.to_wire()})"


_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str | int) -> int:
    """Parse a human-readable size such as ``128m`` or ``1.5g`` (binary units)."""
    if isinstance(text, int):
        return text
    s = text.strip().lower().removesuffix("ib").removesuffix("b") or "0"
    unit = s[-1] if s[-1].isalpha() else ""
    number = s[:-1] if unit else s
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit in {text!r}")
    return int(Decimal(number) * _UNITS[unit])
