"""Checks of public arguments, with a ValueError naming the argument: the one place where an
integer or a real number from a user is vetted before it reaches the engine (whose binding
would answer a wrong type with pybind11's "incompatible function arguments" listing)."""

from __future__ import annotations

import math
import numbers

#: the engine's integer arguments are 64-bit
INT64_LIMIT = 2**63


def integer(name: str, value, minimum: int, limit: int | None = INT64_LIMIT) -> int:
    """`value` as an int when it is an integer >= minimum (and < limit); ValueError otherwise.
    Booleans and fractional numbers are refused: a token count of True or 2.5 is a mistake."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if limit is not None and value >= limit:
        raise ValueError(f"{name} must be < {limit}, got {value}")
    return value


def real(name: str, value) -> float:
    """`value` as a float when it is a finite real number; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)
