"""The one argument engine of the ``gcop`` commands: flags from config dataclasses, one error style.

Every command's options are a config dataclass (fields made with
:func:`gcop_env.utils.fields.option`); :func:`build_parser` turns one into an argparse parser with
``--config FILE`` and one ``--field-name`` flag per field, its help text and default in
``--help``. :func:`parse_config` resolves defaults, then the file, then the flags, and checks
every field. A usage error of any command is one line on stderr, ``prog: error: ...``, with exit
status :data:`~gcop_env.cli.exit_codes.EXIT_USAGE`, never a traceback or a dump of every flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import json
import sys
import types
import typing
from typing import Any, Callable, TypeVar

from gcop_env.cli.exit_codes import EXIT_USAGE
from gcop_env.utils.environ import EnvVarError
from gcop_env.utils.fields import ConfigError, config_from_dict, read_config_file

C = TypeVar("C")


class OneLineErrorParser(argparse.ArgumentParser):
    """``prog: error: ...`` on one line with exit 2, not the usage block of every flag first.

    A flag that takes one value also takes one that starts with ``-`` (``--guide-price -1,2``,
    ``--temperature -inf``), so the value's own check says what is wrong with it; plain argparse
    reads such a value as a flag and says only "expected one argument".
    """

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # noqa: D102 - argparse's own
        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._join_dash_values(args), namespace)

    def _join_dash_values(self, args: list[str]) -> list[str]:
        one_value = {opt for a in self._actions if a.nargs is None and a.option_strings for opt in a.option_strings}
        flags = [opt for a in self._actions for opt in a.option_strings]
        out, i = [], 0
        while i < len(args):
            arg = args[i]
            if arg == "--":  # everything after it is positional
                out.extend(args[i:])
                break
            value = args[i + 1] if i + 1 < len(args) else None
            if (arg in one_value and value is not None and value.startswith("-") and value != "--"
                    and not any(flag.startswith(value.split("=", 1)[0]) for flag in flags)):
                out.append(f"{arg}={value}")
                i += 2
                continue
            out.append(arg)
            i += 1
        return out


_FILE_ERRORS = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (disk quota)",
                errno.EROFS: "the file system is read-only: write somewhere else",
                errno.EACCES: "it is not writable by you: fix its permissions or write somewhere else",
                errno.EPERM: "it is not writable by you: fix its permissions or write somewhere else",
                errno.EISDIR: "a directory is where a file should be",
                errno.ENOTDIR: "a file is where a directory should be", errno.EIO: "the disk failed"}


def file_system_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an error of the file system (a full or read-only disk, a file where a directory
    should be) that the user fixes, not a network error or a bug (those keep their traceback)."""
    return (isinstance(exc, OSError) and not isinstance(exc, ConnectionError)
            and (exc.errno in _FILE_ERRORS or exc.filename is not None))


def os_error_line(exc: OSError) -> str:
    """A file-system error as the one line a user needs: what, where, and what to do."""
    what = exc.strerror or str(exc) or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    return (f"{what}{where} ({_FILE_ERRORS.get(exc.errno, 'I/O error')}); work finished before it is kept: "
            f"re-run the same command once that is fixed")


def one_line_errors(prog: str, command: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """``command`` with the last errors a user can fix turned into one line and exit 2: a malformed
    environment variable (:class:`~gcop_env.utils.environ.EnvVarError`) and an I/O error (a full or
    read-only disk, a file where a directory should be). Never a traceback for those."""
    @functools.wraps(command)
    def run(argv: list[str] | None = None) -> int:
        try:
            return command(argv)
        except EnvVarError as exc:
            return usage_error(prog, exc)
        except OSError as exc:
            if not file_system_error(exc):
                raise
            return usage_error(prog, os_error_line(exc))
    return run


def usage_error(prog: str, message: object) -> int:
    """Print ``prog: error: message`` and return the usage exit status."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"key\": 1}}', got {text!r}")
    return value


def _flag_type(hint: Any) -> tuple[Any, bool]:
    """(argparse type, is_bool) for a field's type hint (``X | None`` unwrapped)."""
    base = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    if base is bool:
        return _parse_bool, True
    if base is dict or typing.get_origin(base) is dict:
        return _json_object, False
    return base, False


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def build_parser(cls: type, prog: str, description: str | None = None) -> OneLineErrorParser:
    """An argparse parser with ``--config FILE`` and one ``--field-name`` flag per field of ``cls``.

    Flags are absent from the namespace unless given (``argument_default=SUPPRESS``), so the
    dataclass defaults, then the config file, stay in force for the rest. A field with
    ``cli=False`` in its metadata has no flag (the command adds its own way to set it); one with
    ``required=True`` must be given as a flag.
    """
    parser = OneLineErrorParser(prog=prog, description=description or (cls.__doc__ or "").split("\n\n")[0],
                                argument_default=argparse.SUPPRESS)
    parser.config_class = cls  # the docs' CLI reference reads each flag's field (type, default, range)
    parser.add_argument("--config", help="YAML or JSON file of field values; flags given here override it")
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        kind, is_bool = _flag_type(hints[f.name])
        kind = meta.get("parse", kind)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{meta.get('help', '')} (default: {default!r})"
        target = parser
        if meta.get("group"):
            target = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        flag = flag_name(f.name)
        if is_bool:
            # `--lora` alone means true; `--lora false` is accepted too
            target.add_argument(flag, dest=f.name, type=kind, nargs="?", const=True, help=help_text)
            target.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_const", const=False,
                                help=argparse.SUPPRESS)
        else:
            target.add_argument(flag, dest=f.name, type=kind, choices=meta.get("choices"), metavar=meta.get("metavar"),
                                required=meta.get("required", False), help=help_text)
    return parser


def resolve_config(cls: type[C], parser: argparse.ArgumentParser, ns: dict[str, Any],
                   base: dict[str, Any] | None = None) -> C:
    """``base`` values (e.g. a preset), then the ``--config`` file in ``ns``, then the flags in ``ns``.

    A bad config file or value is a one-line usage error (exit 2).
    """
    values: dict[str, Any] = dict(base or {})
    ns = dict(ns)
    config_file = ns.pop("config", None)
    try:
        if config_file:
            values.update(read_config_file(config_file))
        values.update(ns)
        return config_from_dict(cls, values)
    except ConfigError as exc:
        parser.error(str(exc))


def parse_config(cls: type[C], argv: list[str] | None, prog: str) -> C:
    """Defaults, then ``--config FILE``, then flags: the resolved config.

    A bad flag, config file or value exits with status 2 and a one-line message.
    """
    parser = build_parser(cls, prog)
    return resolve_config(cls, parser, vars(parser.parse_args(argv)))
