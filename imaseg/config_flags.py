"""Command-line flags of the config dataclasses: one ``--kebab-case`` flag per field, merged over the YAML.

:func:`add_config_arguments` adds a config's flags to a parser (a section's fields as ``--SECTION-FIELD``, in
a group of their own, each also under its older flat name); :func:`resolve_config` merges dataclass defaults
< YAML < the flags set on the command line into the config (:mod:`imaseg.config` reads and checks it).
:class:`HelpFormatter` keeps ``--help`` readable.

Example:
    >>> import argparse
    >>> from imaseg.training.config import TrainConfig
    >>> parser = argparse.ArgumentParser()
    >>> add_config_arguments(parser, TrainConfig)
    >>> args = parser.parse_args(["--epochs", "3", "--ima-delta", "0.5"])
    >>> config = resolve_config(TrainConfig, {"epochs": 2, "lr": 0.01}, args)
    >>> config.epochs, config.lr, config.ima.delta
    (3, 0.01, 0.5)
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from imaseg.config import _aliases, _field_types, _help, _section_type, _unwrap_optional, config_from_dict

__all__ = ["HelpFormatter", "add_config_arguments", "resolve_config"]

T = TypeVar("T")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` that keeps descriptions as written and never breaks a line inside a hyphenated name
    (``bias-field-rel``, ``apgd-dice-l2``), so every listed name can be read and copied whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def add_config_arguments(
    parser: argparse.ArgumentParser | Any,
    cls: type,
    *,
    title: str | None = None,
    prefix: str = "",
    owner_prefix: str = "",
) -> None:
    """Add one ``--kebab-case`` flag per field of ``cls`` (default ``None`` = "keep the config value");
    a section's fields become ``--SECTION-FIELD`` flags in a group of their own, each also under its older
    flat name (the section's ``FLAT_ALIASES``; ``--SECTION`` for its ``SHORTHAND`` field)."""
    group = parser.add_argument_group(title or f"{cls.__name__} (also settable in the YAML config)")
    types_ = _field_types(cls)
    aliases: dict[str, list[str]] = {}
    for alias, target in _aliases(cls).items():
        aliases.setdefault(target, []).append(alias)
    shorthand = getattr(cls, "SHORTHAND", None)
    if shorthand is not None and prefix:  # ``--network NAME``: the section's name sets its shorthand field
        aliases.setdefault(shorthand, []).append(prefix[len(owner_prefix) : -1])
    for field_ in dataclasses.fields(cls):
        section_type = _section_type(types_[field_.name])
        if section_type is not None:
            add_config_arguments(
                parser,
                section_type,
                title=f"{title or cls.__name__}: {_help(field_.metadata, field_.name)}",
                prefix=prefix + field_.name + "_",
                owner_prefix=prefix,
            )
            continue
        inner, _ = _unwrap_optional(types_[field_.name])
        default = field_.default if field_.default is not dataclasses.MISSING else field_.default_factory()  # type: ignore[operator]
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        kwargs: dict[str, Any] = {"default": None, "help": f"{_help(field_.metadata)} (default: {shown})".strip()}
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif "choices" in field_.metadata:
            kwargs["choices"] = field_.metadata["choices"]  # a tuple, or a lazy container (a registry's names)
        else:
            kwargs["metavar"] = field_.metadata.get("metavar", _metavar(inner))
        name = prefix + field_.name
        flags = ["--" + name.replace("_", "-")]
        flags += ["--" + (owner_prefix + alias).replace("_", "-") for alias in aliases.get(field_.name, [])]
        group.add_argument(*flags, dest=f"cfg_{name}", **kwargs)


def _metavar(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence):
        return "A,B,..."
    return getattr(tp, "__name__", "VALUE").upper()


def _flag_values(cls: type, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The flags set on the command line, as flat keys (``ima_delta``) that :func:`config_from_dict` folds."""
    values: dict[str, Any] = {}
    types_ = _field_types(cls)
    for field_ in dataclasses.fields(cls):
        section_type = _section_type(types_[field_.name])
        if section_type is not None:
            values.update(_flag_values(section_type, args, prefix + field_.name + "_"))
            continue
        value = getattr(args, f"cfg_{prefix}{field_.name}", None)
        if value is not None:
            values[prefix + field_.name] = value
    return values


def resolve_config(
    cls: type[T], yaml_data: Mapping[str, Any], args: argparse.Namespace | None = None, *, source: str = "config"
) -> T:
    """Merge: dataclass defaults < ``yaml_data`` < flags set on the command line; errors name ``source`` (and
    the command line where flags were set: a wrong value may come from either)."""
    merged = dict(yaml_data)
    flags = _flag_values(cls, args) if args is not None else {}
    merged.update(flags)
    if flags:
        source = f"{source} + command-line flags" if yaml_data else "command-line flags"
    return config_from_dict(cls, merged, source=source)
