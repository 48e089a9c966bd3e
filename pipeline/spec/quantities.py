"""Kubernetes resource quantities (`500m`, `256Mi`) and Go durations (`60s`, `1m30s`).

Parsed here once so the runtime engines get plain numbers: millicores, bytes, seconds.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

# The pattern Kubernetes publishes for quantities in every CRD schema.
QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_NUMBER = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$")


def is_quantity(value: str) -> bool:
    return bool(QUANTITY.fullmatch(value))


def parse_quantity(value: str) -> Decimal:
    """The quantity's value in base units (cores, bytes); ValueError if it is not a quantity."""
    match = _NUMBER.fullmatch(value)
    if not is_quantity(value) or match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity, e.g. '500m', '1', '256Mi'")
    number, suffix = Decimal(match.group(1)), match.group(2)
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    try:
        return Decimal(match.group(1) + suffix)  # exponent form: 1e3
    except InvalidOperation as exc:  # pragma: no cover - the pattern already matched
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from exc


def cpu_millicores(value: str) -> int:
    return int((parse_quantity(value) * 1000).to_integral_value(ROUND_CEILING))


def memory_bytes(value: str) -> int:
    return int(parse_quantity(value).to_integral_value(ROUND_CEILING))


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: str) -> float:
    """Seconds in a Go duration string (what Knative's annotations use); ValueError if not one."""
    if value == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if match is None:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not value or position != len(value):
        raise ValueError(f"{value!r} is not a duration; write it like '60s', '1m' or '1m30s'")
    return total
