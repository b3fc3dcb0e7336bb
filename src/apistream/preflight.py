"""Checks before Spark starts, each failing with one line that names the path: the output
root can be written, the SQLite database is not held by another writer, the forecast
detector has a model."""

from __future__ import annotations

import os
import socket
import sqlite3
import tempfile
from pathlib import Path

from apistream import sqlite_store
from apistream.config import Config, resolve_secrets
from apistream.errors import ApiStreamError

# Output roots with a URI scheme (s3a://, gs://, abfss://, hdfs://) are checked by Hadoop.
_LOCAL = ("", "file")


def is_local(path: str) -> bool:
    return path.split("://", 1)[0] in _LOCAL if "://" in path else True


def check_output(cfg: Config) -> None:
    """The output root exists (it is created) and a file can be written in it."""
    root = cfg.sinks.output
    if not is_local(root):
        return
    path = Path(root.removeprefix("file://"))
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".apistream-probe-"):
            pass
    except OSError as exc:
        raise ApiStreamError(
            f"cannot write to the output directory {root} (sinks.output): {exc.strerror or exc}"
        ) from None


def check_forecast_model(cfg: Config) -> None:
    """With the forecast detector on, its model is there (a local path; Spark checks a URI
    when the stream starts)."""
    path = cfg.forecast_model_path
    if "forecast" not in cfg.anomaly.detectors or not is_local(path):
        return
    root = Path(path.removeprefix("file://"))
    if not ((root / "series").is_dir() and (root / "model").is_dir()):
        raise ApiStreamError(
            f"anomaly.detectors has forecast but there is no model at {path}: "
            "run `apistream train` first"
        )


def check_sqlite_writable(path: str, patience_s: float = 30.0) -> None:
    """Wait up to `patience_s` for another writer to release the database, then fail naming
    the processes that hold it open."""
    if not Path(path).exists():
        return
    conn = sqlite3.connect(path, timeout=min(5.0, patience_s), isolation_level=None)
    try:
        sqlite_store.begin_immediate(conn, patience_s)
        conn.execute("ROLLBACK")
    except sqlite_store.DatabaseLockedError:
        held = ", ".join(holders(path)) or "another process"
        raise ApiStreamError(
            f"the SQLite database {path} is locked for writing by {held}; "
            f"waited {patience_s:.0f} s. Stop that writer (or point sinks.output "
            "elsewhere) and start again."
        ) from None
    except sqlite3.Error as exc:
        raise ApiStreamError(f"cannot open the SQLite database {path}: {exc}") from None
    finally:
        conn.close()


def holders(path: str) -> list[str]:
    """Other processes that have the file open (Linux /proc), as 'pid 123 (command)'."""
    target = os.path.realpath(path)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else []):
        if int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"pid {pid} ({cmd.decode(errors='replace').strip()[:80]})")
        except OSError:
            continue
    return found


def check_metrics_port(cfg: Config) -> None:
    """metrics.port, when set, can be listened on (before Spark starts, not after)."""
    host, port = cfg.metrics.host, cfg.metrics.port
    if not port:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise metrics_port_error(host, port, exc) from None


def metrics_port_error(host: str, port: int, exc: OSError) -> ApiStreamError:
    """The one-line error of a metrics.port that cannot be listened on."""
    return ApiStreamError(
        f"metrics.port: cannot serve /metrics on {host}:{port}: {exc.strerror or exc} "
        "(choose another with --metrics-port)"
    )


def check_alert_webhooks(cfg: Config) -> None:
    """Every ${VAR} of alerts.webhooks[].url is set (before Spark starts, not after)."""
    resolve_secrets({w.name: w.url for w in cfg.alerts.webhooks}, "alerts.webhooks", os.environ)
