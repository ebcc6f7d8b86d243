"""Configuration: one mechanism for the CLI, the library and the pipelines.

Configs are frozen dataclasses, read from YAML (``yaml.safe_load``) and overridden by CLI flags. Every field
becomes a ``--kebab-case`` flag through :func:`imaseg.config_flags.add_config_arguments` (help text from the
field's ``metadata["help"]``), so each hyper-parameter can be set in a file, on the command line, or both (the
flag wins). A field whose type is itself a config dataclass is a *section*: its fields are the flags
``--SECTION-FIELD`` and may be written in YAML either nested (``ima: {delta: 0.5}``) or flat (``ima_delta:
0.5``; a flat key wins over the nested one). A section that replaced flat keys of an older layout keeps
reading them: its class lists them in ``FLAT_ALIASES`` (``{"channels": "channels"}``: the owner's key
``channels`` sets the section's ``channels``; ``--channels`` stays a flag) and may name in ``SHORTHAND`` the
field a plain value of the section's key sets (``network: unet``). Precedence: nested < alias <
``SECTION_FIELD``. :func:`imaseg.config_flags.resolve_config` does the merge and :func:`save_config` writes
the resolved result (sections nested) beside the outputs. Fields are declared with :func:`setting` and
:func:`section`; a help text may be a function, called when the parser is built (names from a registry).

Example:
    >>> from imaseg.training.config import TrainConfig
    >>> config = config_from_dict(TrainConfig, {"epochs": "3", "ima_delta": "1/4"})
    >>> config.epochs, config.ima.delta
    (3, 0.25)
    >>> to_dict(config_from_dict(TrainConfig, {"ima": {"delta": 2, "eps_max": 4}}))["ima"]["delta"]
    2.0
    >>> config_from_dict(TrainConfig, {"network": "segresnet", "channels": "4,8"}).network.channels
    (4, 8)
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from imaseg.utils.atomic import atomic_write_text
from imaseg.utils.checks import check_choice

__all__ = [
    "config_from_dict",
    "config_part",
    "load_yaml",
    "merge_mappings",
    "save_config",
    "section",
    "section_from_mapping",
    "setting",
    "to_dict",
]

T = TypeVar("T")

HelpText = str | Callable[[], str]
"""A field's ``--help`` text, or a function giving it (called when the parser is built)."""


def setting(default: Any, help_text: HelpText, **extra: Any) -> Any:
    """One config field: its default (a list is copied for every instance), its ``--help`` text and extra
    metadata (``choices``: a tuple or a lazy container of the valid values; ``metavar``)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help_text, **extra})
    return dataclasses.field(default=default, metadata={"help": help_text, **extra})


def section(cls: type, help_text: HelpText) -> Any:
    """A field holding config dataclass ``cls`` (its defaults): flags ``--FIELD-X``, YAML nested or ``FIELD_X``."""
    return dataclasses.field(default_factory=cls, metadata={"help": help_text})


def _help(metadata: Mapping[str, Any], default: str = "") -> str:
    text = metadata.get("help", default)
    return str(text() if callable(text) else text)


def _aliases(section_type: type) -> dict[str, str]:
    """The flat keys of an older layout a section still reads: ``{owner key: section field}``."""
    return dict(getattr(section_type, "FLAT_ALIASES", {}))


def merge_mappings(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``override`` on top; nested mappings (``ima: {...}``) merge key by key.

    >>> merge_mappings({"lr": 1, "ima": {"steps": 10}}, {"ima": {"margin": "sample"}})
    {'lr': 1, 'ima': {'steps': 10, 'margin': 'sample'}}
    """
    out = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_mappings(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


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


def config_part(data: Mapping[str, Any], name: str, path: str | os.PathLike[str] | None) -> Mapping[str, Any]:
    """The settings a command reads from a config file: its ``name`` section if it has one, else the whole file;
    ``{}`` for an empty section (every key commented out).

    >>> config_part({"train": {"epochs": 3}, "evaluate": {}}, "train", "run.yaml")
    {'epochs': 3}
    >>> config_part({"epochs": 3}, "train", "run.yaml"), config_part({"train": None}, "train", "run.yaml")
    ({'epochs': 3}, {})

    Raises:
        ValueError: the section is not a mapping of settings (naming the file).
    """
    value = data.get(name, data) if data else {}
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{path}: `{name}` must be a mapping of settings (key: value lines), got {type(value).__name__}"
        )
    return value


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


def _collect_section(name: str, section_type: type, normalised: dict[str, Any], source: str) -> dict[str, Any] | None:
    """Pop section ``name``'s keys out of ``normalised`` (nested mapping or shorthand < aliases < flat
    ``NAME_FIELD``) and return them as one mapping; ``None`` when the data name none of them."""
    present = name in normalised
    nested = normalised.pop(name, None)
    if nested is None:
        nested = {}
    elif dataclasses.is_dataclass(nested) and not isinstance(nested, type):
        nested = to_dict(nested)
    elif not isinstance(nested, Mapping):
        shorthand = getattr(section_type, "SHORTHAND", None)
        if shorthand is None:
            raise ValueError(f"{source}: `{name}` must be a mapping of {section_type.__name__} keys, got {nested!r}")
        nested = {shorthand: nested}
    merged = {str(k).replace("-", "_"): v for k, v in nested.items()}
    for alias, target in _aliases(section_type).items():
        if alias in normalised:
            merged[target] = normalised.pop(alias)
    prefix = f"{name}_"
    for key in [k for k in normalised if k.startswith(prefix)]:
        merged[key[len(prefix) :]] = normalised.pop(key)
    return merged if (merged or present) else None


def _gather_sections(cls: type, normalised: dict[str, Any], source: str) -> dict[str, Any]:
    """Fold each section's keys (nested, aliases of an older flat layout, flat ``SECTION_FIELD``) into one
    mapping under the section's name."""
    types_ = _field_types(cls)
    for f in dataclasses.fields(cls):
        section_type = _section_type(types_[f.name])
        if section_type is None:
            continue
        merged = _collect_section(f.name, section_type, normalised, source)
        if merged is not None:
            normalised[f.name] = merged
    return normalised


def section_from_mapping(section_type: type[T], data: Mapping[str, Any], name: str, *, source: str = "config") -> T:
    """Section ``name`` of a saved mapping (a run's ``train`` settings, in any layout it was written in);
    the mapping's other keys are ignored.

    >>> from imaseg.networks import NetworkConfig
    >>> section_from_mapping(NetworkConfig, {"network": "unet", "channels": [4, 8], "epochs": 3}, "network")
    NetworkConfig(name='unet', channels=(4, 8), res_units=2, dropout=0.0)
    """
    normalised = {str(k).replace("-", "_"): v for k, v in data.items()}
    merged = _collect_section(name, section_type, normalised, source)
    return config_from_dict(section_type, merged or {}, source=f"{source}: {name}")


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping (``None``: the defaults); unknown keys raise listing the valid ones."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping of settings (key: value lines), got {type(data).__name__}")
    types_ = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    names = list(fields)
    normalised = _gather_sections(cls, {str(k).replace("-", "_"): v for k, v in data.items()}, source)
    unknown = sorted(set(normalised) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown} for {cls.__name__}; valid keys: {', '.join(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in normalised.items():
        section_type = _section_type(types_[key])
        if section_type is not None:
            kwargs[key] = config_from_dict(section_type, value, source=f"{source}: {key}")
        else:
            try:
                kwargs[key] = _coerce(key, value, types_[key])
            except ValueError as error:
                raise ValueError(f"{source}: {error}") from None
            kwargs[key] = _chosen(source, key, kwargs[key], fields[key].metadata.get("choices"))
    try:
        return cls(**kwargs)
    except ValueError as error:  # a check across settings (``__post_init__``): name where they came from
        raise ValueError(f"{source}: {error}") from None


def _chosen(source: str, key: str, value: Any, choices: Any) -> Any:
    """``value`` checked against a setting's ``choices`` (each item of a list setting) as its flag is, in any case:
    returned lower-cased (``Poly`` -> ``poly``), as :func:`~imaseg.utils.checks.check_choice` does."""
    if choices is None or value is None:
        return value
    try:
        if isinstance(value, list | tuple):
            return type(value)(check_choice(key, item, choices) for item in value)
        return check_choice(key, value, choices)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


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


def save_config(path: str | os.PathLike[str], sections: Mapping[str, Any]) -> Path:
    """Write ``{section: dataclass or dict}`` as YAML atomically."""
    data = {k: (to_dict(v) if dataclasses.is_dataclass(v) else v) for k, v in sections.items()}
    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
