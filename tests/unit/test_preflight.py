"""Pre-flight checks: unwritable outputs and a locked SQLite database fail with one line."""

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from apistream import sqlite_store
from apistream.config import load_config
from apistream.errors import ApiStreamError
from apistream.preflight import (
    check_forecast_model,
    check_output,
    check_sqlite_writable,
    holders,
)


def cfg_with_output(output):
    return load_config(environ={}, overrides={"sinks.output": str(output)})


def test_output_under_a_file_names_the_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ApiStreamError) as err:
        check_output(cfg_with_output(tmp_path / "file" / "sub"))
    assert f"{tmp_path}/file/sub (sinks.output)" in str(err.value)
    assert "Not a directory" in str(err.value)


def test_output_that_is_a_file_names_the_path(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(ApiStreamError) as err:
        check_output(cfg_with_output(tmp_path / "out"))
    assert "File exists" in str(err.value)


def test_read_only_output_names_the_path(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: a read-only filesystem then
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], check=True)
    else:
        ro.chmod(0o500)
    try:
        with pytest.raises(ApiStreamError) as err:
            check_output(cfg_with_output(ro / "out"))
        assert f"cannot write to the output directory {ro}/out (sinks.output)" in str(err.value)
        assert "Read-only file system" in str(err.value) or "Permission denied" in str(err.value)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=True)
        else:
            ro.chmod(0o700)


def test_writable_output_is_created(tmp_path):
    check_output(cfg_with_output(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone


def _hold_lock(db, seconds):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, time\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            f"c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep({seconds})\n"
            "c.execute('COMMIT')",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_locked_database_waits_then_names_the_holder(tmp_path):
    db = tmp_path / "analytics.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    holder = _hold_lock(db, 60)
    try:
        assert any(f"pid {holder.pid} " in h for h in holders(str(db)))
        start = time.monotonic()
        with pytest.raises(ApiStreamError) as err:
            check_sqlite_writable(str(db), patience_s=1.0)
        assert time.monotonic() - start < 15
        assert f"pid {holder.pid}" in str(err.value) and "locked for writing" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    check_sqlite_writable(str(db), patience_s=1.0)  # released: passes


def test_a_write_waits_for_a_short_lock_and_loses_nothing(tmp_path):
    db = tmp_path / "analytics.db"
    conn = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    holder = _hold_lock(db, 2)
    start = time.monotonic()
    with sqlite_store.transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    assert time.monotonic() - start >= 1.0  # it waited past several 0.2 s attempts
    holder.wait()
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_write_gives_up_after_its_patience(tmp_path):
    db = tmp_path / "analytics.db"
    conn = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    holder = _hold_lock(db, 30)
    try:
        with pytest.raises(sqlite_store.DatabaseLockedError):
            sqlite_store.begin_immediate(conn, patience_s=1.0)
    finally:
        holder.kill()
        holder.wait()


def test_the_forecast_detector_needs_its_model_before_spark_starts(tmp_path):
    cfg = load_config(
        environ={},
        overrides={"sinks.output": str(tmp_path), "anomaly.detectors": ["ewma", "forecast"]},
    )
    with pytest.raises(
        ApiStreamError, match=r"no model at .*models/forecast: run `apistream train"
    ):
        check_forecast_model(cfg)
    (tmp_path / "models" / "forecast" / "series").mkdir(parents=True)
    with pytest.raises(ApiStreamError, match="no model at"):
        check_forecast_model(cfg)  # the series without the model
    (tmp_path / "models" / "forecast" / "model").mkdir()
    check_forecast_model(cfg)  # there now
    check_forecast_model(load_config(environ={}, overrides={"sinks.output": str(tmp_path / "x")}))
