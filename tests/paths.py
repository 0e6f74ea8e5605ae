"""Where the tests find their files, wherever a test module sits under tests/."""
from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"  # recorded provider payloads, MIME samples, bounces, replies
REPO_ROOT = TESTS.parent
SHARED = REPO_ROOT.parent / "shared"  # read-only material next to the checkout (e.g. Twilio's OpenAPI description)
