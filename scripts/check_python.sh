#!/usr/bin/env bash
# The project needs Python 3.11+ to create its virtualenv.
set -euo pipefail
py="${1:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11+ is required (tried '$py'). Install python3.11 or run" >&2
  echo "  make PYTHON=/path/to/python3.11 ..." >&2
  exit 1
fi
