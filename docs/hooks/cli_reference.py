"""MkDocs hook: fills docs/reference/cli.md with the ``--help`` text of every ``stylecam`` subcommand.

The text comes from the argparse parsers themselves, in this process (no subprocess): a
module's ``build_parser(prog)`` where it has one; otherwise its ``main(["--help"], prog)``
is run with argparse's parse methods stopped at their first call, which hands over the
parser main built. The command table is ``stylecam.cli.SUBCOMMANDS``, so a new
subcommand appears here without touching this file. Any parser that cannot be built fails
the build. The help is formatted at a fixed width (COLUMNS=100) so the page is stable.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

PAGE = "reference/cli.md"
MARKER = "<!-- cli-reference: filled in by docs/hooks/cli_reference.py -->"
COLUMNS = "100"
PARSE_METHODS = ("parse_args", "parse_known_args", "parse_intermixed_args", "parse_known_intermixed_args")


class _Built(Exception):  # not an error: carries the parser main built out of main
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def _stop(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
    raise _Built(self)


@contextlib.contextmanager
def _parse_methods_stopped() -> Iterator[None]:
    saved = {name: getattr(argparse.ArgumentParser, name) for name in PARSE_METHODS}
    for name in PARSE_METHODS:
        setattr(argparse.ArgumentParser, name, _stop)
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(argparse.ArgumentParser, name, method)


def parser_for(module_name: str, prog: str) -> argparse.ArgumentParser:
    """The parser of the subcommand in ``module_name``, as ``stylecam`` would build it."""
    module = importlib.import_module(module_name)
    build = getattr(module, "build_parser", None)
    if build is not None:
        return build(prog)
    with _parse_methods_stopped():
        try:
            module.main(["--help"], prog=prog)
        except _Built as built:
            return built.parser
    raise PluginError(f"{module_name}.main() returned without parsing its arguments: no parser for {prog!r}")


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _shown(parser: argparse.ArgumentParser, zoo: str) -> argparse.ArgumentParser:
    """The parser with this machine's path to the default models written as models/zoo."""
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = action.help.replace(zoo, "models/zoo")
        if isinstance(action.default, (str, Path)) and zoo in str(action.default):
            action.default = str(action.default).replace(zoo, "models/zoo")
    return parser


def _usage(table: dict, prog: str) -> str:
    from stylecam.cli import dispatch

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        dispatch(table, ["--help"], prog)
    return out.getvalue()


def _block(text: str) -> str:
    return "```text\n" + text.rstrip() + "\n```\n"


def _sections(table: dict, prog: str, level: int, zoo: str) -> Iterator[str]:
    for name, (target, summary) in table.items():
        command = f"{prog} {name}"
        yield f"{'#' * level} {command}\n\n{summary[0].upper()}{summary[1:]}.\n"
        if isinstance(target, dict):
            yield _block(_usage(target, command))
            yield from _sections(target, command, level + 1, zoo)
            continue
        try:
            parser = parser_for(target, command)
            yield _block(_shown(parser, zoo).format_help())
            for sub, subparser in _subparsers(parser):
                yield f"{'#' * (level + 1)} {command} {sub}\n"
                yield _block(_shown(subparser, zoo).format_help())
        except PluginError:
            raise
        except Exception as e:  # an import or a parser that fails: the page would be wrong, so no page
            raise PluginError(f"CLI reference: cannot build the parser of {command!r} ({target}): {type(e).__name__}: {e}") from e


def reference() -> str:
    """The Markdown of every subcommand's help, at COLUMNS characters."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = COLUMNS
    try:
        from stylecam.cli import SUBCOMMANDS
        from stylecam.server.model_card import DEFAULT_ZOO

        parts = ["## stylecam\n", _block(_usage(SUBCOMMANDS, "stylecam"))]
        parts += _sections(SUBCOMMANDS, "stylecam", 2, str(DEFAULT_ZOO))
        return "\n".join(parts)
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"{PAGE} has lost its marker line {MARKER!r}; the CLI reference has nowhere to go")
    return markdown.replace(MARKER, reference())
