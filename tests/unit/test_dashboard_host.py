"""The dashboard answers only expected Host headers (DNS rebinding), on a real server."""

import http.client
import socket
import threading
import time

import pytest
import uvicorn

from apistream.config import load_config
from apistream.dashboard.app import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    def start(**dashboard):
        overrides = {"sinks.output": str(tmp_path)} | {
            f"dashboard.{k}": v for k, v in dashboard.items()
        }
        cfg = load_config(environ={}, overrides=overrides)
        port = free_port()
        srv = uvicorn.Server(
            uvicorn.Config(create_app(cfg.sqlite_path, cfg), port=port, log_level="error")
        )
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        while not srv.started:
            time.sleep(0.05)
        started.append((srv, thread))
        return port

    started: list = []
    yield start
    for srv, thread in started:
        srv.should_exit = True
        thread.join(10)


def status(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", "/", skip_host=True)
    conn.putheader("Host", host)
    conn.endheaders()
    return conn.getresponse().status


def test_localhost_names_are_answered_and_others_refused(server):
    port = server()
    assert status(port, f"127.0.0.1:{port}") == 200
    assert status(port, f"localhost:{port}") == 200
    assert status(port, f"attacker.example:{port}") == 400
    assert status(port, "rebind.attacker.example") == 400


def test_configured_names_replace_the_defaults(server):
    port = server(allowed_hosts=["dash.internal"])
    assert status(port, f"dash.internal:{port}") == 200
    assert status(port, f"localhost:{port}") == 400
