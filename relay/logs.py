"""One log format for every process: time, level, logger, message (one line per event)."""
from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    root = logging.getLogger()
    if getattr(root, "_relay_configured", False):
        return
    level = os.environ.get("RELAY_LOG_LEVEL", "INFO").upper()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level if level in logging._nameToLevel else "INFO")
    # twilio's HTTP client logs every request's URL and headers at INFO: noise, and it names the account.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    logging.getLogger("flufl.bounce").setLevel(logging.WARNING)  # one INFO line per detector per bounce
    root._relay_configured = True  # type: ignore[attr-defined]
