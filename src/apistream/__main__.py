"""`python -m apistream` is the `apistream` command."""

from apistream.cli import main

main()
