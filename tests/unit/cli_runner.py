"""The `apistream` command line run in-process (typer's CliRunner), for the CLI tests."""

from __future__ import annotations

from dataclasses import dataclass

from typer.testing import CliRunner

from apistream.cli import app


@dataclass(frozen=True)
class Ran:
    """What a command did: its exit code and its two output streams."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, env: dict[str, str] | None = None) -> Ran:
    """Run `apistream ARGS` with `env` over the environment; an unexpected exception (not an
    exit) propagates, so a traceback fails the test."""
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)
