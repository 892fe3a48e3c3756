"""Debian's headless Chromium for the browser tests: found on PATH, launched the way this machine needs.

Playwright cannot download its own browser here, so the tests launch Debian's binary. Without it a
browser test skips with a message, except under CI=true, where .ci/run installs it and a missing
browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

# without the background-networking flags Chromium's own connections are refused by the closed network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """The chromium executable, or skip (fail under CI=true) with what to install."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but no chromium on PATH: .ci/run must install it (apt-get install -y chromium)")
    pytest.skip("no chromium on PATH: install Debian's package (apt-get install -y chromium) to run the browser tests")


def launch(playwright: Any) -> Any:
    """A headless browser from a Playwright instance (``sync_playwright()`` or the async one)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
