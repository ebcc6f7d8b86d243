"""Configuration: one mechanism for the CLI, the library and the pipelines.

Configs are frozen dataclasses, read from YAML (``yaml.safe_load``) and overridden by CLI flags. Every
field becomes a ``--kebab-case`` flag through :func:`add_config_arguments` (help text from the field's
``metadata["help"]``), so each hyper-parameter can be set in a file, on the command line, or both (the
flag wins). A field whose type is itself a config dataclass is a *section*: its fields are the flags
``--SECTION-FIELD`` and may be written in YAML either nested (``ima: {delta: 0.5}``) or flat
(``ima_delta: 0.5``; a flat key wins over the nested one). :func:`resolve_config` does the merge and
:func:`save_config` writes the resolved result (sections nested) beside the outputs.

Example:
    >>> from imaseg.training.config import TrainConfig
    >>> config = config_from_dict(TrainConfig, {"epochs": "3", "ima_delta": "1/4"})
    >>> config.epochs, config.ima.delta
    (3, 0.25)
    >>> to_dict(config_from_dict(TrainConfig, {"ima": {"delta": 2}}))["ima"]["delta"]
    2.0
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from imaseg.utils.atomic import atomic_write_text

__all__ = ["add_config_arguments", "config_from_dict", "load_yaml", "resolve_config", "save_config", "to_dict"]

T = TypeVar("T")


def load_yaml(path: str | os.PathLike[str] | None) -> dict:
    """Read a YAML mapping (``{}`` for ``None``); a clear error for a missing or malformed file."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert a YAML / CLI value to the field's declared type, with a clear error."""
    inner, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ValueError(f"`{name}` may not be empty")
    origin = typing.get_origin(inner)
    if origin in (list, tuple, Sequence):
        (item_type, *_) = typing.get_args(inner) or (str,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip() != ""]
        if not isinstance(value, (list, tuple)):
            value = [value]
        items = [_coerce(name, v, item_type) for v in value]
        return tuple(items) if origin is tuple else items
    if inner is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"`{name}` must be true or false, got {value!r}")
    if inner in (int, float):
        try:
            number = _eval_number(value) if isinstance(value, str) else value
            if isinstance(number, bool) or (inner is int and isinstance(number, float) and not number.is_integer()):
                raise ValueError  # "2.5" or true for an int field must not become 2 or 1
            return inner(number)
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValueError(f"`{name}` must be {inner.__name__}, got {value!r}") from None
    if inner is str:
        return str(value)
    return value


def _eval_number(text: str) -> float:
    """Numbers, also written as fractions: ``"2/255"`` -> 0.00784..."""
    text = text.strip()
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def _section_type(tp: Any) -> type | None:
    """The dataclass of a section field, else ``None``."""
    inner, _ = _unwrap_optional(tp)
    return inner if isinstance(inner, type) and dataclasses.is_dataclass(inner) else None


def _gather_sections(cls: type, normalised: dict[str, Any], source: str) -> dict[str, Any]:
    """Fold flat ``SECTION_FIELD`` keys into their section's mapping (flat keys win)."""
    types_ = _field_types(cls)
    for f in dataclasses.fields(cls):
        section = _section_type(types_[f.name])
        if section is None:
            continue
        nested = normalised.get(f.name) or {}
        if dataclasses.is_dataclass(nested) and not isinstance(nested, type):
            nested = to_dict(nested)
        if not isinstance(nested, Mapping):
            raise ValueError(f"{source}: `{f.name}` must be a mapping of {section.__name__} keys, got {nested!r}")
        merged = {str(k).replace("-", "_"): v for k, v in nested.items()}
        prefix = f"{f.name}_"
        for key in [k for k in normalised if k.startswith(prefix)]:
            merged[key[len(prefix) :]] = normalised.pop(key)
        if merged or f.name in normalised:
            normalised[f.name] = merged
    return normalised


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys raise listing the valid ones."""
    types_ = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    normalised = _gather_sections(cls, {str(k).replace("-", "_"): v for k, v in data.items()}, source)
    unknown = sorted(set(normalised) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown} for {cls.__name__}; valid keys: {', '.join(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in normalised.items():
        section = _section_type(types_[key])
        if section is not None:
            kwargs[key] = config_from_dict(section, value, source=f"{source}: {key}")
        else:
            kwargs[key] = _coerce(key, value, types_[key])
    return cls(**kwargs)


def to_dict(config: Any) -> dict:
    """A dataclass as a plain dict of YAML-friendly values (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return to_dict(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def add_config_arguments(
    parser: argparse.ArgumentParser | Any, cls: type, *, title: str | None = None, prefix: str = ""
) -> None:
    """Add one ``--kebab-case`` flag per field of ``cls`` (default ``None`` = "keep the config value");
    a section's fields become ``--SECTION-FIELD`` flags in a group of their own."""
    group = parser.add_argument_group(title or f"{cls.__name__} (also settable in the YAML config)")
    types_ = _field_types(cls)
    for field in dataclasses.fields(cls):
        section = _section_type(types_[field.name])
        if section is not None:
            help_text = field.metadata.get("help", field.name)
            add_config_arguments(
                parser, section, title=f"{title or cls.__name__}: {help_text}", prefix=prefix + field.name + "_"
            )
            continue
        inner, _ = _unwrap_optional(types_[field.name])
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[operator]
        help_text = field.metadata.get("help", "")
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        kwargs: dict[str, Any] = {"default": None, "help": f"{help_text} (default: {shown})".strip()}
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif "choices" in field.metadata:
            kwargs["choices"] = field.metadata["choices"]  # a tuple, or a lazy container (a registry's names)
        else:
            kwargs["metavar"] = field.metadata.get("metavar", _metavar(inner))
        name = prefix + field.name
        group.add_argument("--" + name.replace("_", "-"), dest=f"cfg_{name}", **kwargs)


def _metavar(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence):
        return "A,B,..."
    return getattr(tp, "__name__", "VALUE").upper()


def _flag_values(cls: type, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The flags set on the command line, as flat keys (``ima_delta``) that :func:`config_from_dict` folds."""
    values: dict[str, Any] = {}
    types_ = _field_types(cls)
    for field in dataclasses.fields(cls):
        section = _section_type(types_[field.name])
        if section is not None:
            values.update(_flag_values(section, args, prefix + field.name + "_"))
            continue
        value = getattr(args, f"cfg_{prefix}{field.name}", None)
        if value is not None:
            values[prefix + field.name] = value
    return values


def resolve_config(cls: type[T], yaml_data: Mapping[str, Any], args: argparse.Namespace | None = None) -> T:
    """Merge: dataclass defaults < ``yaml_data`` < flags set on the command line."""
    merged = dict(yaml_data)
    if args is not None:
        merged.update(_flag_values(cls, args))
    return config_from_dict(cls, merged)


def save_config(path: str | os.PathLike[str], sections: Mapping[str, Any]) -> Path:
    """Write ``{section: dataclass or dict}`` as YAML atomically."""
    data = {k: (to_dict(v) if dataclasses.is_dataclass(v) else v) for k, v in sections.items()}
    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
