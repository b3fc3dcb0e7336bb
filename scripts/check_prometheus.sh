#!/usr/bin/env bash
# The /metrics test scrapes a running pipeline with a real Prometheus server, and the Grafana
# alert rules are checked with promtool; both come with Debian's `prometheus` package. With
# --install (make test and CI, as root) install it when missing.
set -euo pipefail
prometheus_bin="${PROMETHEUS_BIN:-prometheus}"
if command -v "$prometheus_bin" >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "${1:-}" = "--install" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing prometheus (apt-get) for the /metrics test…"
  apt-get update -qq
  # The package's service is not started here (no init system in CI); the test starts its own.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  command -v "$prometheus_bin" >/dev/null 2>&1 && exit 0
fi
echo "error: the /metrics test needs a Prometheus server, but '$prometheus_bin' was not found." >&2
echo "  Debian/Ubuntu: sudo apt-get install -y prometheus (as root: $0 --install)" >&2
echo "  elsewhere: https://prometheus.io/download, or set PROMETHEUS_BIN to its binary." >&2
exit 1
