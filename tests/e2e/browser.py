"""A real headless Chromium for browser tests: the distribution's `chromium` package (installed by
`make browsers` and .ci/run), driven by Playwright for Python. Playwright's own browser download
(`playwright install`) is never used: the executable is /usr/bin/chromium.

Outside CI a missing chromium (or Playwright) skips the browser tests; under CI=true it fails them."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI

CHROMIUM = Path(os.environ.get("RELAY_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _unavailable(message: str):
    if IN_CI:
        pytest.fail(message + " (required in CI: run `make browsers`)")
    pytest.skip(message + " (`make browsers` installs it)")


@pytest.fixture
def chromium():
    """A function that opens a fresh browser profile (its own user-data dir; `locale` its language, sent as
    Accept-Language) and returns its context;
    every profile opened is closed at the end of the test."""
    if not CHROMIUM.exists():
        _unavailable(f"no chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"Playwright for Python is not installed ({exc})")
    opened, profiles = [], []
    with sync_playwright() as playwright:
        def open_profile(locale: str = "en-US"):
            profile = tempfile.TemporaryDirectory(prefix="relay-chromium-")
            profiles.append(profile)
            context = playwright.chromium.launch_persistent_context(
                profile.name, executable_path=str(CHROMIUM), args=ARGS, headless=True,
                viewport={"width": 1280, "height": 900}, locale=locale, timezone_id="Asia/Seoul")
            context.set_default_timeout(20_000)
            opened.append(context)
            return context

        try:
            yield open_profile
        finally:
            for context in opened:
                context.close()
            for profile in profiles:
                profile.cleanup()
