#!/usr/bin/env bash
# Spark 4 needs Java 17+. Say so clearly, and how to get it, instead of a JVM stack trace.
set -euo pipefail
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "error: Java 17+ is required by Spark 4 but no 'java' was found." >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless" >&2
  echo "  macOS:         brew install openjdk@17" >&2
  echo "  or set JAVA_HOME to a Java 17+ installation." >&2
  exit 1
fi
version=$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
if [ -z "$version" ] || [ "$version" -lt 17 ]; then
  echo "error: Java 17+ is required by Spark 4; found Java ${version:-unknown} ($java_bin)." >&2
  echo "  install openjdk-17 (see above) or set JAVA_HOME to a Java 17+ installation." >&2
  exit 1
fi
