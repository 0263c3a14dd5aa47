"""Config dataclasses whose fields are their own documentation and checks.

A field made with :func:`option` carries its help text and its valid range; :func:`validate_fields`
checks every field of a config (type, finiteness, range, choices) and raises a one-line
:class:`ConfigError` naming the field, the value and what is valid. Every command's config (the
trainers', ``gcop eval``'s, the core call options they share) is built this way, and
:func:`gcop_env.cli.args.build_parser` turns one into the command's flags. Values are resolved
in order: the dataclass default, then a YAML/JSON file (:func:`read_config_file`), then flags.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

from gcop_env.utils.files import write_text_atomic
from gcop_env.utils.numbers import check_bool, check_int, check_number

C = TypeVar("C")


class ConfigError(ValueError):
    """A config value is of the wrong type or out of its range, or a field is unknown."""


def option(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A config field with help text, checked by :func:`validate_fields` and turned into a flag by
    :func:`gcop_env.cli.args.build_parser`.

    Metadata: ``lo``/``hi`` (``lo_open``/``hi_open`` for strict bounds) give a number's range;
    ``choices`` the allowed values. For the flag: ``cli=False`` (no flag: the command sets the
    field itself), ``required=True`` (the flag must be given), ``parse`` (a function from the flag's text to the value), ``metavar``,
    ``group`` (a heading in ``--help``).
    """
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


def validate_fields(config: Any) -> None:
    """Check every field of a config dataclass: type, finiteness and range (the field's ``lo``/``hi``).

    Raises :class:`ConfigError` naming the field, the value and what is valid.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        base, optional = _unwrap_optional(hints[f.name])
        if value is None:
            if optional:
                continue
            raise ConfigError(f"{f.name} must be set (got null)")
        meta = f.metadata
        bounds = dict(lo=meta.get("lo"), hi=meta.get("hi"))
        try:
            if base is bool:
                check_bool(f.name, value)
            elif base is int:
                check_int(f.name, value, **bounds)
            elif base is float:
                check_number(f.name, value, **bounds, lo_open=meta.get("lo_open", False),
                             hi_open=meta.get("hi_open", False))
            elif base is str and not isinstance(value, str):
                raise ValueError(f"{f.name} must be a string, got {value!r} ({type(value).__name__})")
            elif (base is dict or typing.get_origin(base) is dict) and not isinstance(value, dict):
                raise ValueError(f"{f.name} must be a mapping (JSON object), got {value!r}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if f.metadata.get("choices") and value not in f.metadata["choices"]:
            raise ConfigError(f"{f.name} must be one of {list(f.metadata['choices'])}, got {value!r}")


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), len(args) < len(typing.get_args(hint))
    return hint, False


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (``.yaml``/``.yml``) or JSON config file as a dict of field names to values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else f"config file {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - YAML, JSON and decoding errors all mean the same to the user
        detail = " ".join(str(exc).split())
        raise ConfigError(f"config file {path} cannot be read ({type(exc).__name__}: {detail})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        import difflib

        hints = [f"{u!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, names, 1)) else "")
                 for u in unknown]
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(hints)}; valid: {sorted(names)}")
    return cls(**values)


def write_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as JSON (it can be passed back with ``--config``)."""
    return write_text_atomic(path, json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n")
