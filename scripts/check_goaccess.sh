#!/usr/bin/env bash
# The benchmark runs GoAccess (https://goaccess.io) over the same events written as nginx
# lines, as a peer to compare the pipeline with. Debian's package is used. With --install
# (CI, as root) install it when missing. (`apistream bench` itself runs without it and says
# so in its results.)
set -euo pipefail
goaccess_bin="${GOACCESS_BIN:-goaccess}"
if command -v "$goaccess_bin" >/dev/null 2>&1; then
  exit 0
fi
if [ "${1:-}" = "--install" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing goaccess (apt-get) for the benchmark's GoAccess peer…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq goaccess >/dev/null
  command -v "$goaccess_bin" >/dev/null 2>&1 && exit 0
fi
echo "error: the benchmark runs GoAccess as a peer but '$goaccess_bin' was not found." >&2
echo "  Debian/Ubuntu: sudo apt-get install -y goaccess (as root: $0 --install)" >&2
echo "  elsewhere: https://goaccess.io/download, or set GOACCESS_BIN to its binary." >&2
exit 1
