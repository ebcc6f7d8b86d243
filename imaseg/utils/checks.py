"""Argument checks with messages that name the argument, the expectation and what was given."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["check_choice", "check_non_negative", "check_positive_int", "check_probability"]


def check_non_negative(name: str, value: float) -> float:
    """Return ``float(value)`` or raise ``ValueError`` if it is negative or not finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__})") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"`{name}` must be >= 0, got {value}")
    return number


def check_positive_int(name: str, value: int, *, minimum: int = 1) -> int:
    """Return ``value`` as an int or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return value


def check_probability(name: str, value: float) -> float:
    """Return ``float(value)`` or raise if it is outside [0, 1]."""
    number = check_non_negative(name, value)
    if number > 1:
        raise ValueError(f"`{name}` must be in [0, 1], got {value}")
    return number


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` (lower-cased if a string) or raise listing the valid choices."""
    options = list(choices)
    key = value.lower() if isinstance(value, str) else value
    if key not in options:
        raise ValueError(f"unknown `{name}` {value!r}; choose one of {', '.join(map(str, options))}")
    return key
