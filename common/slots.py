"""Resource slots: a mapping of slot name to an exact decimal amount, and the one set
of rules both the manager and the agent size sessions with.

Slot names: ``cpu`` (cores), ``mem`` (bytes), ``cuda.shares`` (GPUs, whole or a fraction
of one device; ``cuda.device`` is read as the same slot). Arithmetic is exact
(``Decimal``) so repeated allocate/free never drifts; the manager's scheduler converts
at its boundary with ``as_floats``.

The rules (each defined here only):

- ``granted_slots``: a request, defaulted, floored by ``ai.backend.resource.min.*``
  and capped by ``ai.backend.maxcores`` / ``ai.backend.maxmem``. A bad request value is
  ``InvalidAPIParameters`` (400); a bad image label is ``InvalidImageLabel`` on both
  sides, never silently ignored.
- ``gpu_amount``: a GPU request is a whole number of devices, or one fraction of a
  single device (0 < x < 1, in steps of 0.01).
- ``assign_gpus``: which devices a GPU request maps to (see its docstring); the agent
  places with it and the manager's aggregate check is the same sum of shares.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation

from common.errors import InvalidAPIParameters, InvalidImageLabel

Number = int | float | str | Decimal

CPU = "cpu"
MEM = "mem"
GPU = "cuda.shares"
GPU_LEGACY = "cuda.device"  # older name of the same slot, read as GPU
KNOWN_SLOTS = frozenset({CPU, MEM, GPU})

LABEL_MAXCORES = "ai.backend.maxcores"
LABEL_MAXMEM = "ai.backend.maxmem"
LABEL_MINCORES = "ai.backend.resource.min.cpu"
LABEL_MINMEM = "ai.backend.resource.min.mem"
GPU_STEP = Decimal("0.01")  # the finest GPU share a session may ask for


def _dec(v: Number) -> Decimal:
    return v if isinstance(v, Decimal) else Decimal(str(v))


def _text(v: Decimal) -> str:
    if v == v.to_integral_value():
        return str(v.to_integral_value())
    return str(v.normalize())


class ResourceSlot(Mapping[str, Decimal]):
    """An immutable slot → amount mapping with element-wise arithmetic."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Number] | None = None) -> None:
        self._data: dict[str, Decimal] = {
            GPU if k == GPU_LEGACY else k: _dec(v) for k, v in (data or {}).items()}

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

    def as_floats(self) -> dict[str, float]:
        """For the scheduler's numpy matrices (its boundary; bookkeeping stays exact)."""
        return {k: float(v) for k, v in self._data.items()}

    def to_wire(self) -> dict[str, str]:
        """Decimals travel as strings so no precision is lost (seed 004 ``decimal``), in
        their shortest form: ``1`` rather than ``1.0``, ``0.5`` rather than ``0.50``."""
        return {k: _text(v) for k, v in sorted(self._data.items())}

    @classmethod
    def from_wire(cls, data: Mapping[str, object] | None) -> ResourceSlot:
        """A slot map from the wire or the database; an entry that is not a finite
        number is dropped (stored data never makes a reader fail)."""
        out: dict[str, Decimal] = {}
        for key, value in (data or {}).items():
            try:
                d = Decimal(str(value))
            except (InvalidOperation, ValueError):
                continue
            if d.is_finite():
                out[key] = d
        return cls(out)

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


def slot_floats(data: Mapping[str, object] | None) -> dict[str, float]:
    """A stored or wire slot map as floats (the scheduler's and reports' view); entries
    that are not finite numbers are dropped, as ``ResourceSlot.from_wire`` does."""
    return ResourceSlot.from_wire(data).as_floats()


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


# ---- sizing a session (manager admission and agent create) ------------------------------

def request_amount(name: str, value: object) -> Decimal:
    """A requested amount: a finite, non-negative number (``InvalidAPIParameters``)."""
    if isinstance(value, bool):
        raise InvalidAPIParameters(f"slot {name!r}: {value!r} is not a number")
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidAPIParameters(f"slot {name!r}: {value!r} is not a number") from None
    if not d.is_finite() or d < 0:
        raise InvalidAPIParameters(f"slot {name!r} must be a non-negative number")
    return d


def request_memory(value: object) -> Decimal:
    """Bytes, given as a number or a size such as ``512m``."""
    if isinstance(value, str) and value.strip()[-1:].isalpha():
        try:
            return Decimal(parse_bytes(value))
        except (ValueError, InvalidOperation):
            raise InvalidAPIParameters(f"slot 'mem': {value!r} is not a size") from None
    return request_amount(MEM, value)


def gpu_amount(value: object) -> Decimal:
    """A GPU request: 0, a whole number of devices, or a fraction (0.01 … 0.99) of one."""
    amount = request_amount(GPU, value)
    if amount == amount.to_integral_value():
        return amount
    if amount > 1 or amount % GPU_STEP:
        raise InvalidAPIParameters(
            f"slot {GPU!r}: {amount} GPUs: ask for whole devices or one fraction of a "
            f"device in steps of {GPU_STEP}")
    return amount


def _label(labels: Mapping[str, object], key: str, *, size: bool = False) -> Decimal | None:
    text = labels.get(key)
    if text is None:
        return None
    try:
        d = Decimal(parse_bytes(str(text))) if size else Decimal(str(text).strip())
    except (ValueError, InvalidOperation):
        raise InvalidImageLabel(f"image label {key}={text!r} is not a "
                                f"{'size such as 2g' if size else 'number'}") from None
    if not d.is_finite() or d <= 0:
        raise InvalidImageLabel(f"image label {key}={text!r} must be positive")
    return d


def granted_slots(requested: Mapping[str, object], labels: Mapping[str, object],
                  default_cpu: Number = 1, default_mem: Number = 1 << 30) -> ResourceSlot:
    """The slots a session gets: the request, defaulted, floored by the image's
    ``ai.backend.resource.min.*`` labels, then capped by ``ai.backend.maxcores`` /
    ``ai.backend.maxmem``. The manager admits with it and the agent grants with it."""
    req = {GPU if k == GPU_LEGACY else k: v for k, v in requested.items()}
    unknown = set(req) - KNOWN_SLOTS
    if unknown:
        raise InvalidAPIParameters(f"unknown resource slots: {sorted(unknown)}")
    cpu = request_amount(CPU, req.get(CPU, default_cpu))
    mem = request_memory(req.get(MEM, default_mem))
    gpu = gpu_amount(req.get(GPU, 0))
    if cpu <= 0 or mem <= 0:
        raise InvalidAPIParameters("cpu and mem must be positive")
    min_cpu, max_cpu = _label(labels, LABEL_MINCORES), _label(labels, LABEL_MAXCORES)
    min_mem = _label(labels, LABEL_MINMEM, size=True)
    max_mem = _label(labels, LABEL_MAXMEM, size=True)
    for lo, hi, what in ((min_cpu, max_cpu, "cores"), (min_mem, max_mem, "memory")):
        if lo is not None and hi is not None and lo > hi:
            raise InvalidImageLabel(f"the image's minimum {what} ({lo}) exceeds its "
                                    f"maximum ({hi})")
    if min_cpu is not None:
        cpu = max(cpu, min_cpu)
    if max_cpu is not None:
        cpu = min(cpu, max_cpu)
    if min_mem is not None:
        mem = max(mem, min_mem)
    if max_mem is not None:
        mem = min(mem, max_mem)
    slots: dict[str, Decimal] = {CPU: cpu, MEM: mem.to_integral_value()}
    if gpu > 0:
        slots[GPU] = gpu
    return ResourceSlot(slots)


def assign_gpus(free: Sequence[Decimal], amount: Decimal) -> tuple[int, ...] | None:
    """Which devices (indices into ``free``, each device's unused share 0 … 1) a GPU
    request of ``amount`` (``gpu_amount``) maps to, or None when it cannot be placed.

    - a whole number n: the n lowest-indexed devices that are entirely free;
    - a fraction x < 1: one device, the one with the least free share that still holds
      x (best fit, so small shares fill a device before opening the next and whole
      devices stay free), ties to the lowest index.

    The session then holds ``amount / len(devices)`` of each device it maps to, and
    CUDA_VISIBLE_DEVICES / DeviceRequests name exactly those devices.
    """
    if amount <= 0:
        return ()
    if amount == amount.to_integral_value():
        whole = [i for i, f in enumerate(free) if f >= 1]
        return tuple(whole[: int(amount)]) if len(whole) >= amount else None
    fitting = [(f, i) for i, f in enumerate(free) if f >= amount]
    return (min(fitting)[1],) if fitting else None
