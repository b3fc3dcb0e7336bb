"""README screenshots of the report and the live dashboard, made with the project's own commands
(`apistream report`, `apistream dashboard`) and Debian's headless Chromium.

    .venv/bin/python scripts/screenshots.py --output output/demo --images docs/images
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from apistream.viz.browser import launch


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "apistream.cli", *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="output/demo", help="a finished run's output root")
    parser.add_argument("--images", default="docs/images", help="where to write the PNGs")
    opts = parser.parse_args()
    images = Path(opts.images)
    images.mkdir(parents=True, exist_ok=True)

    subprocess.run(_cli("report", "--output", opts.output), check=True)
    report = Path(opts.output, "report", "report.html").resolve()
    shutil.copy(report.parent / "top_endpoints.png", images / "report_top_endpoints.png")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(_cli("dashboard", "--output", opts.output, "--port", str(port)))
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "api/state", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the dashboard did not start")
                time.sleep(0.1)
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as user_dir:
            ctx = launch(pw, user_dir)
            page = ctx.new_page()
            page.goto(report.as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5")
            page.screenshot(
                path=str(images / "report.png"),
                clip={"x": 0, "y": 0, "width": 1400, "height": 2300},
                full_page=True,
            )
            page.goto(url)
            page.wait_for_selector("body[data-status=ok] #chart-latency .main-svg")
            page.screenshot(path=str(images / "dashboard.png"), full_page=True)
            ctx.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    for name in ("report.png", "report_top_endpoints.png", "dashboard.png"):
        print(images / name)


if __name__ == "__main__":
    main()
