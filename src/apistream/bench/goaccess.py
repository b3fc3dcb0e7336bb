"""GoAccess as a peer: the bench's generated events written as nginx access-log lines with
$request_time, then parsed and aggregated by GoAccess (https://goaccess.io), timed in the
bench process. GoAccess 1.7 (Debian) parses on one thread and keeps its panels in memory.

The lines are the same events the pipeline reads: every JSON line that carries what nginx
logs (an ISO UTC timestamp, method, path, integer status, numeric latency and bytes) becomes
an nginx line; the others (malformed JSON, a missing or wrongly typed field) are written as
they are, so GoAccess counts them as failed lines as the pipeline quarantines them.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

# nginx: log_format bench '...'; the combined format plus $request_time (seconds, ms).
NGINX_LOG_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" $request_time'
)
# The same in GoAccess's notation (%T: request time in seconds with ms resolution).
GOACCESS_LOG_FORMAT = '%h %^[%d:%t %^] "%r" %s %b "%R" "%u" %T'
GOACCESS_DATE_FORMAT = "%d/%b/%Y"
GOACCESS_TIME_FORMAT = "%H:%M:%S"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ISO_UTC = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|\+00:00)?$")


def _escape(text: str) -> str:
    """nginx escapes '"' and '\\' (and control characters) in logged variables as \\xHH."""
    out = text.replace("\\", "\\x5C").replace('"', "\\x22")
    return "".join(c if c >= " " else f"\\x{ord(c):02X}" for c in out)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def nginx_line(line: str) -> str | None:
    """One generated JSON line as nginx would have logged the request, or None when the
    line does not carry what nginx logs (it is then written as it is)."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    ts, method, path, status = (rec.get(k) for k in ("timestamp", "method", "path", "status"))
    latency, sent = rec.get("latency_ms"), rec.get("bytes_sent", 0)
    m = _ISO_UTC.match(ts) if isinstance(ts, str) else None
    if (
        m is None
        or not isinstance(method, str)
        or not isinstance(path, str)
        or not isinstance(status, int)
        or isinstance(status, bool)
        or not _number(latency)
        or not (_number(sent) and float(sent).is_integer())
    ):
        return None
    year, month, day, hms = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    if not 1 <= month <= 12:
        return None
    ip = rec.get("client_ip") or "-"
    agent = rec.get("user_agent") or "-"
    return (
        f"{ip} - - [{day}/{_MONTHS[month - 1]}/{year}:{hms} +0000] "
        f'"{_escape(method)} {_escape(path)} HTTP/1.1" {status} {int(sent)} '
        f'"-" "{_escape(str(agent))}" {latency / 1000:.3f}'
    )


def write_nginx_log(files: list[Path], out: Path) -> dict[str, int]:
    """Write every line of `files` (in order) to `out` as nginx lines; counts of both kinds."""
    written = raw = 0
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as src:
                lines = src.read().splitlines()
            buf = []
            for text in lines:
                converted = nginx_line(text)
                if converted is None:
                    raw += 1
                    buf.append(text)
                else:
                    written += 1
                    buf.append(converted)
            fh.write("\n".join(buf) + "\n" if buf else "")
    return {"lines": written + raw, "nginx_lines": written, "raw_lines": raw}


def goaccess_command(binary: str, log: Path, report: Path) -> list[str]:
    """Parse `log` and write GoAccess's JSON report (every panel) to `report`."""
    return [
        binary,
        str(log),
        f"--log-format={GOACCESS_LOG_FORMAT}",
        f"--date-format={GOACCESS_DATE_FORMAT}",
        f"--time-format={GOACCESS_TIME_FORMAT}",
        "--no-global-config",
        "--no-progress",
        "--no-parsing-spinner",
        "--num-tests=0",  # do not give up when the first lines happen to be defective
        "-o",
        str(report),
    ]


def _version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = next((x.strip() for x in out.stdout.splitlines() if x.strip()), "")
    return first.removeprefix("GoAccess - ").rstrip(".") or "unknown"


def goaccess_peer(files: list[Path], work: Path, keep: bool = False) -> dict[str, Any]:
    """Convert `files` to an nginx log, time GoAccess over it; its lines/s and own counts.
    Without GoAccess the result says so (and how to install it) instead of a figure."""
    binary = os.environ.get("GOACCESS_BIN") or shutil.which("goaccess")
    if not binary:
        return {
            "error": "GoAccess not installed: run scripts/check_goaccess.sh --install "
            "(Debian package goaccess) and re-run the bench"
        }
    work.mkdir(parents=True, exist_ok=True)
    log, report = work / "access.log", work / "goaccess.json"
    started = time.perf_counter()
    counts = write_nginx_log(files, log)
    convert_s = time.perf_counter() - started
    cmd = goaccess_command(binary, log, report)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        if done.returncode != 0:
            return {
                "error": f"goaccess exited {done.returncode}: {done.stderr.strip()[-500:]}",
                "command": cmd,
            }
        general = json.loads(report.read_text()).get("general", {})
        return {
            "version": _version(binary),
            **counts,
            "convert_s": round(convert_s, 2),
            "seconds": round(seconds, 2),
            "cpu_s": round(
                (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2
            ),
            "lines_per_s": round(counts["lines"] / seconds),
            "valid_requests": general.get("valid_requests"),
            "failed_requests": general.get("failed_requests"),
            "log_format": NGINX_LOG_FORMAT,
            "command": cmd,
        }
    finally:
        if not keep:
            log.unlink(missing_ok=True)
            report.unlink(missing_ok=True)
