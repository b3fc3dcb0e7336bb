"""The terminal: one console for output, one for errors, and the error handling every command
shares (an ApiStreamError is one red line and its exit code, never a traceback)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from apistream.errors import ApiStreamError

# Piped output (CI logs, files) gets 120 columns rather than rich's 80, so tables fit.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


def fail(exc: ApiStreamError) -> typer.Exit:
    """Print the error as one line; the Exit to raise, carrying its exit code."""
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(exc.exit_code)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """The command, with any ApiStreamError it raises shown by `fail`."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ApiStreamError as exc:
            raise fail(exc) from None

    return run
