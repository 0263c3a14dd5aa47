"""MkDocs hook: the docs' option tables and CLI reference, generated from the code at build time.

``mkdocs.yml`` loads this file (``hooks:``). A page asks for a generated block with a marker on a
line of its own, which :func:`on_page_markdown` replaces before the page is rendered:

``<!-- gcop:cli-reference -->``
    every ``gcop`` sub-command (:data:`gcop_env.cli.main.COMMANDS`), from the parser the command
    itself parses with (:func:`gcop_env.cli.main.command_parser`): usage, every option, its default,
    its valid values and its help. Options of a config dataclass take their type, default and
    range from the field (:func:`gcop_env.utils.fields.option`).
``<!-- gcop:config MODULE:CLASS -->``
    a config dataclass's fields (the keys of a ``--config`` file): flag, type, default, valid
    values, help.
``<!-- gcop:env-options -->``
    the keyword arguments of ``gym.make`` (:class:`gcop_env.envs.env.GCoPEnv`): names and defaults
    from its signature, meanings from its docstring's ``Args:`` section.
``<!-- gcop:validator-options -->``
    per registered task, the validator's keyword arguments (which ``gym.make`` passes on).
``<!-- gcop:exit-codes -->``
    the exit statuses of :mod:`gcop_env.cli.exit_codes` (its docstring's table, checked against
    the constants).

A marker this hook does not know, a command without a parser, an env parameter its docstring
does not describe (or the reverse): each fails the build, so the pages cannot drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import importlib
import inspect
import re
import shutil
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parent.parent

MARKER = re.compile(r"^<!-- gcop:([a-z-]+)(?: +(\S+))? -->$", re.M)


class DocsGenerationError(RuntimeError):
    """A marker or a piece of code the generator cannot document."""


# ---------------------------------------------------------------- text helpers

def rst_to_md(text: str) -> str:
    """The reStructuredText bits of docstrings and help texts as Markdown: ``x`` and :role:`x` are `x`."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def cell(text: Any) -> str:
    """Text for a Markdown table cell: HTML escaped outside `code spans`, pipes escaped, one line."""
    parts = rst_to_md(str(text)).replace("\n", " ").split("`")
    out = []
    for i, part in enumerate(parts):
        out.append(part if i % 2 else html.escape(part, quote=False))
    return "`".join(out).replace("|", "\\|")


def code(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else repr(value)
    return "`" + text.replace("`", "'") + "`"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def valid_values(meta: typing.Mapping[str, Any]) -> str:
    """A field's range or choices from its :func:`~gcop_env.utils.fields.option` metadata."""
    if meta.get("choices"):
        return ", ".join(code(c) for c in meta["choices"])
    if meta.get("lo") is None and meta.get("hi") is None:
        return ""
    from gcop_env.utils.numbers import describe_range  # the words of the range errors themselves

    return describe_range(meta.get("lo"), meta.get("hi"), meta.get("lo_open", False), meta.get("hi_open", False))


def type_name(hint: Any) -> str:
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else hint
    if hint is dict or typing.get_origin(hint) is dict:
        name = "JSON object"
    elif typing.get_origin(hint) is tuple:
        name = "pair of numbers"
    else:
        name = getattr(hint, "__name__", str(hint))
    return name + (" or unset" if optional else "")


def field_default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


# ---------------------------------------------------------------- config dataclasses

def config_table(cls: type) -> str:
    """Every field of a config dataclass: flag, type, default, valid values, help."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta:
            raise DocsGenerationError(f"{cls.__name__}.{f.name} has no help text (make it with option())")
        flag = f"`{flag_of(f.name)}`" if meta.get("cli", True) else "(set by the command)"
        rows.append([f"`{f.name}`", flag, cell(type_name(hints[f.name])), code(field_default(f)),
                     cell(valid_values(meta)), cell(meta["help"])])
    return table(["field", "flag", "type", "default", "valid", "meaning"], rows)


def load_object(path: str) -> Any:
    module, _, name = path.partition(":")
    if not name:
        raise DocsGenerationError(f"expected MODULE:NAME, got {path!r}")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------- the CLI reference

def _action_rows(parser: argparse.ArgumentParser, actions: list[argparse.Action]) -> list[list[str]]:
    config = getattr(parser, "config_class", None)
    fields = {f.name: f for f in dataclasses.fields(config)} if config else {}
    hints = typing.get_type_hints(config) if config else {}
    formatter = parser._get_formatter()
    rows = []
    for action in actions:
        if action.help == argparse.SUPPRESS or isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        invocation = formatter._format_action_invocation(action)
        f = fields.get(action.dest) if action.option_strings and action.dest != "config" else None
        if f is not None:
            meta = f.metadata
            kind = type_name(hints[f.name])
            if kind.startswith("bool"):
                invocation = f"{action.option_strings[0]} [BOOL]`, `--no-{f.name.replace('_', '-')}"
            default = "required" if action.required else code(field_default(f))
            valid, help_text = valid_values(meta), meta.get("help", "")
        else:
            if not action.option_strings and action.nargs in ("*", "?"):
                default = "optional"  # argparse marks a '*' positional required; it is not
            elif action.required:
                default = "required"
            elif isinstance(action, argparse._StoreConstAction):  # store_true / store_false too
                default = "on" if action.default == action.const else "off"
            elif action.default in (None, argparse.SUPPRESS) or not action.option_strings:
                default = ""
            else:
                default = code(action.default)
            valid = ", ".join(code(c) for c in action.choices) if action.choices else ""
            help_text = action.help or ""
        rows.append([f"`{invocation}`", default, cell(valid), cell(help_text)])
    return rows


def parser_reference(parser: argparse.ArgumentParser, level: int = 2) -> str:
    """One command: its description, usage and a table of options per argument group."""
    out = [f"{'#' * level} `{parser.prog}`", ""]
    if parser.description:
        out += [rst_to_md(" ".join(parser.description.split())), ""]
    usage = " ".join(parser.format_usage().split())
    out += ["```text", usage, "```", ""]
    for group in parser._action_groups:
        rows = _action_rows(parser, group._group_actions)
        if not rows:
            continue
        out += [f"**{group.title}**", "", table(["option", "default", "valid", "meaning"], rows), ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out.append(parser_reference(sub, level + 1))
    return "\n".join(out)


def cli_reference() -> str:
    main = importlib.import_module("gcop_env.cli.main")

    missing = set(main.COMMANDS) ^ set(main.PARSERS)
    if missing:
        raise DocsGenerationError(f"commands without a parser (or parsers without a command): {sorted(missing)}")
    listed = dict(re.findall(r"^  (\w+) +(.+)$", main.USAGE, re.M))
    if set(listed) != set(main.COMMANDS):
        raise DocsGenerationError(f"gcop's USAGE lists {sorted(listed)}, the commands are {sorted(main.COMMANDS)}")
    out = [table(["command", "what it does"], [[f"[`gcop {name}`](#gcop-{name})", cell(listed[name])]
                                               for name in main.COMMANDS]), ""]
    for name in main.COMMANDS:
        parser = main.command_parser(name)
        if parser.prog != f"gcop {name}":
            raise DocsGenerationError(f"the parser of gcop {name} calls itself {parser.prog!r}")
        out.append(parser_reference(parser))
    return "\n".join(out)


# ---------------------------------------------------------------- gym.make and the validators

def args_section(doc: str | None) -> list[tuple[list[str], str]]:
    """The entries of a Google-style ``Args:`` section: ([names], text), in order."""
    lines = inspect.cleandoc(doc or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return []
    base = len(lines[start]) - len(lines[start].lstrip())
    entries: list[tuple[list[str], str]] = []
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= base:
            break
        match = re.match(r"^(\*{0,2}[\w]+(?:, \*{0,2}\w+)*): (.*)$", line.strip())
        if indent == base + 4 and match:
            entries.append(([n.lstrip("*") for n in match.group(1).split(", ")], match.group(2)))
        elif entries:
            names, text = entries[-1]
            entries[-1] = (names, text + " " + line.strip())
    return entries


def _signature_rows(func: Any, doc_owner: Any, skip: set[str], what: str) -> list[list[str]]:
    params = {name: p for name, p in inspect.signature(func).parameters.items() if name not in skip}
    documented: dict[str, tuple[list[str], str]] = {}
    for owner in (inspect.getmro(doc_owner) if inspect.isclass(doc_owner) else [doc_owner]):
        for names, text in args_section(owner.__doc__):
            for name in names:
                documented.setdefault(name, (names, text))
    undocumented = sorted(set(params) - set(documented))
    if undocumented:
        raise DocsGenerationError(f"{what}: parameters not described in the docstring's Args: {undocumented}")
    rows, seen = [], set()
    for name in params:
        names, text = documented[name]
        if tuple(names) in seen:
            continue
        seen.add(tuple(names))
        unknown = [n for n in names if n not in params]
        if unknown:
            raise DocsGenerationError(f"{what}: the docstring describes {unknown}, which are not parameters")
        shown = []
        for n in names:
            p = params[n]
            if p.kind is p.VAR_KEYWORD:
                shown.append((f"`**{n}`", ""))
            else:
                shown.append((f"`{n}`", "required" if p.default is p.empty else code(p.default)))
        rows.append([", ".join(s[0] for s in shown), ", ".join(s[1] for s in shown if s[1]), cell(text)])
    return rows


def env_options() -> str:
    from gcop_env.envs.env import GCoPEnv

    rows = _signature_rows(GCoPEnv.__init__, GCoPEnv, {"self", "task"}, "GCoPEnv")
    return table(["keyword", "default", "meaning"], rows)


def validator_options() -> str:
    import gcop_env

    out = []
    for spec in gcop_env.registered_tasks():
        validator = spec.validator
        rows = _signature_rows(validator, validator, {"self"}, f"{spec.env_id}'s validator")
        name = getattr(validator, "__qualname__", repr(validator))
        out += [f"**`{spec.env_id}`** (`{validator.__module__}.{name}`)", ""]
        out += [table(["keyword", "default", "meaning"], rows) if rows else "No options.", ""]
    return "\n".join(out)


def exit_codes() -> str:
    """The table of :mod:`gcop_env.cli.exit_codes`'s docstring, each number checked against its constant."""
    from gcop_env.cli import exit_codes as module

    rows: list[list[str]] = []
    for line in (module.__doc__ or "").splitlines():
        match = re.match(r"^``(EXIT_\w+)``\s+(\d+)\s+(.*)$", line)
        if match:
            name, number, text = match.groups()
            if getattr(module, name, None) != int(number):
                raise DocsGenerationError(f"exit_codes' docstring says {name} is {number}, the code says "
                                          f"{getattr(module, name, None)}")
            rows.append([f"`{name}`", number, text.strip()])
        elif rows and line.startswith(" " * 33) and line.strip():
            rows[-1][2] += " " + line.strip()
    names = {name for name in vars(module) if name.startswith("EXIT_")}
    if names != {row[0].strip("`") for row in rows}:
        raise DocsGenerationError(f"exit_codes' docstring table and its constants differ: {sorted(names)}")
    return table(["name", "status", "when"], [[r[0], r[1], cell(r[2].replace("``", "`"))] for r in rows])


# ---------------------------------------------------------------- the hook

def generate(kind: str, arg: str | None) -> str:
    if kind == "cli-reference":
        return cli_reference()
    if kind == "config" and arg:
        return config_table(load_object(arg))
    if kind == "env-options":
        return env_options()
    if kind == "validator-options":
        return validator_options()
    if kind == "exit-codes":
        return exit_codes()
    raise DocsGenerationError(f"unknown docs marker gcop:{kind} {arg or ''}".strip())


def expand(markdown: str) -> str:
    return MARKER.sub(lambda m: generate(m.group(1), m.group(2)), markdown)


def package_tree(into: Path) -> Path:
    """A copy of the sources laid out as the package installs: ``gcop_env/`` with ``trainers/``,
    ``validators/`` and ``sandbox/`` inside it (``[tool.setuptools.package-dir]`` of pyproject.toml),
    for mkdocstrings' static reader, which looks for ``gcop_env.validators`` in
    ``gcop_env/validators/`` (it follows links to where they point, so links will not do)."""
    import tomllib

    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-dir"]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, folder in sorted(dirs.items()):  # gcop_env first, then the folders that go inside it
        shutil.copytree(ROOT / folder, into / name.replace(".", "/"), ignore=ignore)
    return into


_TREES: list[str] = []


@event_priority(100)  # before mkdocstrings' on_config, which makes the Python handler with its paths
def on_config(config: Any) -> Any:
    tree = tempfile.mkdtemp(prefix="gcop-docs-")
    _TREES.append(tree)
    package_tree(Path(tree))
    handlers = config.plugins["mkdocstrings"].config["handlers"]
    handlers.setdefault("python", {})["paths"] = [tree]
    return config


def on_shutdown() -> None:
    while _TREES:
        shutil.rmtree(_TREES.pop(), ignore_errors=True)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:  # noqa: ARG001 - MkDocs' hook signature
    try:
        return expand(markdown)
    except DocsGenerationError as exc:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{page.file.src_path}: {exc}") from None
