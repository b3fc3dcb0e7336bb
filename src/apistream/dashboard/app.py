"""The dashboard web app (Starlette): the page, its JSON state and plotly.js served from the
installed plotly package, so it works with no internet access."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import plotly.offline
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from apistream.config import Config, DashboardConfig
from apistream.dashboard.state import dashboard_state


@cache
def _plotly_js() -> str:
    return plotly.offline.get_plotlyjs()


def _resource(name: str) -> str:
    return resources.files("apistream").joinpath("resources", name).read_text(encoding="utf-8")


def create_app(sqlite_path: str | Path, cfg: Config) -> Starlette:
    """The app serving one run's SQLite database, read-only."""
    d = cfg.dashboard
    page = (
        _resource("dashboard.html")
        .replace("__REFRESH_MS__", str(int(d.refresh * 1000)))
        .replace("__RECENT_MIN__", f"{d.recent / 60:g}")
    )

    def index(_: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    def state(_: Request) -> Response:
        body = dashboard_state(sqlite_path, d.recent, d.history_windows)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def script(_: Request) -> Response:
        return Response(_resource("dashboard.js"), media_type="text/javascript")

    def plotly_js(_: Request) -> Response:
        return Response(
            _plotly_js(),
            media_type="text/javascript",
            headers={"Cache-Control": "max-age=86400"},
        )

    return Starlette(
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(d))],
        routes=[
            Route("/", index),
            Route("/api/state", state),
            Route("/static/dashboard.js", script),
            Route("/static/plotly.min.js", plotly_js),
        ],
    )


LOCAL_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def allowed_hosts(d: DashboardConfig) -> list[str]:
    """Host headers to answer: a page on another name (DNS rebinding) gets 400."""
    if d.allowed_hosts:
        return list(d.allowed_hosts)
    extra = [] if d.host in ("0.0.0.0", "::", "") else [d.host]
    return [*LOCAL_NAMES, *extra]


def serve(cfg: Config) -> None:
    """Say where the dashboard is (and that only localhost names are answered on a wildcard
    address without dashboard.allowed_hosts), then run it until interrupted."""
    import uvicorn

    from apistream.console import console

    d = cfg.dashboard
    console.print(
        f"dashboard: http://{d.host}:{d.port}/ reading {cfg.sqlite_path} (Ctrl-C stops)",
        highlight=False,
    )
    if d.host in ("0.0.0.0", "::") and not d.allowed_hosts:
        console.print(
            "note: only localhost names are answered; list the names other machines use "
            "in dashboard.allowed_hosts (APISTREAM_DASHBOARD__ALLOWED_HOSTS='[host]')",
            highlight=False,
        )
    uvicorn.run(create_app(cfg.sqlite_path, cfg), host=d.host, port=d.port, log_level="warning")
