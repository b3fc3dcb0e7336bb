#!/usr/bin/env bash
# The browser tests (report, dashboard) drive Debian's Chromium through Playwright; Playwright's
# own browser download is not used. With --install (CI, as root) install it when missing.
set -euo pipefail
chromium_bin="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [ -x "$chromium_bin" ]; then
  exit 0
fi
if [ "${1:-}" = "--install" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium (apt-get) for the browser tests…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [ -x "$chromium_bin" ] && exit 0
fi
echo "error: the browser tests need Chromium at $chromium_bin but it is not there." >&2
echo "  Debian/Ubuntu: sudo apt-get install -y chromium" >&2
echo "  elsewhere: set CHROMIUM_BIN to a Chromium/Chrome binary." >&2
exit 1
