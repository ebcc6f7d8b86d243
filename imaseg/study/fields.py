"""Checks of a study declaration's values, with messages that name the key, the expectation and the value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["check_keys", "int_list", "mapping", "name_list", "number", "text"]


def check_keys(where: str, data: Mapping[str, Any], allowed: Sequence[str], required: Sequence[str] = ()) -> None:
    """Unknown keys and missing required keys of ``data``, named with ``where``."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; valid keys: {', '.join(allowed)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{where}: missing required keys {missing}")


def mapping(where: str, value: Any) -> dict[str, Any]:
    """``value`` as a dict with string keys (``None`` is empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"`{where}` must be a mapping, got {value!r} ({type(value).__name__})")
    return {str(k): v for k, v in value.items()}


def int_list(where: str, value: Any) -> tuple[int, ...]:
    """A non-empty list of distinct non-negative integers (a single integer is a list of one)."""
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"`{where}` must be a non-empty list of integers >= 0, got {value!r}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise ValueError(f"`{where}` must be a non-empty list of integers >= 0, got {value!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"`{where}` lists a value twice: {value!r}")
    return tuple(items)


def name_list(where: str, value: Any) -> tuple[str, ...]:
    """A list of strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"`{where}` must be a list of names, got {value!r}")
    return tuple(value)


def number(where: str, value: Any, *, minimum: float = 0.0) -> float:
    """A number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{where}` must be a number, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"`{where}` must be >= {minimum:g}, got {value}")
    return float(value)


def text(where: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"`{where}` must be a non-empty string, got {value!r}")
    return value
