"""The headless Chromium the screenshots and browser tests use: Debian's, never a download."""

from __future__ import annotations

import os
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
# Without the background-networking flags Chromium floods a closed network with requests.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch(playwright: Any, user_dir: str, **kwargs: Any) -> Any:
    """A persistent headless Chromium context in `user_dir`, 1400x900 unless overridden."""
    options: dict[str, Any] = {"viewport": {"width": 1400, "height": 900}, **kwargs}
    return playwright.chromium.launch_persistent_context(
        user_dir, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, **options
    )
