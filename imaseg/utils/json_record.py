"""Frozen dataclasses that are JSON objects: the keys are the field names, in field order.

A typed file record (``imaseg.summary.Summary``) declares its fields once and gets ``from_json`` /
``to_json`` that round-trip exactly: unknown keys are kept in ``extra`` and written back, nested records
(one, a list or a mapping of them) are converted by their declared type, a field can be left out of the
JSON while empty (``omit_empty``) or have its keys merged into its parent's (``flat``), and a scalar
``float`` read as ``null`` is NaN again (NaN is written as ``null``). A value of the wrong JSON type or a
missing required key is a :class:`ValueError` naming where in the file it is.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True, kw_only=True)
... class Point(JsonRecord):
...     x: float
...     tags: list[str] = json_field(list, omit_empty=True)
>>> Point.from_json({"x": 1.5, "colour": "red"}).to_json()
{'x': 1.5, 'colour': 'red'}
>>> Point.from_json({"x": "far"}, "point.json")
Traceback (most recent call last):
ValueError: point.json.x must be float, got a string
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any, TypeVar

__all__ = ["JsonRecord", "json_field"]

_PLAIN: dict[str, tuple[type, ...]] = {
    "list": (list,),
    "dict": (Mapping,),
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}
R = TypeVar("R", bound="JsonRecord")


def json_field(
    default: Any = MISSING, *, record: type | None = None, many: type | None = None, omit_empty=False, flat=False
) -> Any:
    """A field of a :class:`JsonRecord`: ``default`` (a type such as ``list`` is a factory), a nested
    ``record`` type (``many``: ``list`` or ``dict`` of them), left out while empty (``omit_empty``), or its
    keys merged into the parent's (``flat``)."""
    meta = {"record": record, "many": many, "omit_empty": omit_empty, "flat": flat}
    if isinstance(default, type):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def _kind(value: Any) -> str:
    """A JSON value's type in words, for messages."""
    names = {dict: "an object", list: "an array", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


@dataclass(frozen=True, kw_only=True)
class JsonRecord:
    """A JSON object whose keys are the field names, in field order; unknown keys are kept in ``extra``."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls: type[R], data: Any, where: str = "") -> R:
        """Build from a JSON object; ``where`` names it in error messages."""
        where = where or cls.__name__
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be a JSON object, got {_kind(data)}")
        rest = dict(data)
        record = cls._take(rest, where)
        return replace(record, extra=rest) if rest else record

    @classmethod
    def _take(cls: type[R], rest: dict[str, Any], where: str) -> R:
        """Build from (and remove) this record's keys of ``rest``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            if f.metadata.get("flat"):
                values[f.name] = f.metadata["record"]._take(rest, where)
            elif f.name in rest:
                values[f.name] = _decode(f, rest.pop(f.name), f"{where}.{f.name}")
            elif f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{where} has no {f.name!r}")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The JSON object (values as held: NaN stays NaN until written)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (f.metadata.get("omit_empty") and (value is None or value in ({}, []))):
                continue
            if f.metadata.get("flat"):
                out.update(value.to_json())
            else:
                out[f.name] = _encode(value)
        out.update(self.extra)
        return out


def _encode(value: Any) -> Any:
    if isinstance(value, JsonRecord):
        return value.to_json()
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(f: Field, raw: Any, where: str) -> Any:
    record, many = f.metadata.get("record"), f.metadata.get("many")
    kinds = {part.strip().split("[")[0] for part in str(f.type).split("|")}
    if raw is None and "None" in kinds:
        return None
    if record is None:
        if "Any" in kinds:
            return raw
        if raw is None and "float" in kinds:
            return float("nan")  # NaN is written as null
        if not isinstance(raw, tuple(t for k in kinds for t in _PLAIN.get(k, ()))):
            raise ValueError(f"{where} must be {' or '.join(sorted(kinds))}, got {_kind(raw)}")
        return raw
    if many is list:
        if not isinstance(raw, list):
            raise ValueError(f"{where} must be an array, got {_kind(raw)}")
        return [record.from_json(v, f"{where}[{i}]") for i, v in enumerate(raw)]
    if many is dict:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be an object, got {_kind(raw)}")
        return {str(k): record.from_json(v, f"{where}.{k}") for k, v in raw.items()}
    return record.from_json(raw, where)
