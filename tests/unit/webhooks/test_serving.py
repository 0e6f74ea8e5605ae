"""relay web's gunicorn hooks (webhooks/serving.py): gunicorn_options hands gunicorn the module, and each
worker, once it has loaded the app, moves what is alive into the collector's permanent generation."""
from __future__ import annotations

import gc

from gunicorn.app.base import Application

from relay.cli.common import gunicorn_options
from webhooks import serving


class _Options(Application):
    def __init__(self, argv):
        self.argv = argv
        super().__init__()

    def init(self, parser, opts, args):
        return None

    def load_config(self):
        parsed = self.cfg.parser().parse_args(self.argv)
        self.load_config_from_module_name_or_filename(parsed.config)

    def load(self):  # pragma: no cover - never served
        return None


def test_relay_web_runs_gunicorn_with_the_hooks():
    options = gunicorn_options(3, 1)
    app = _Options([*options, "webhooks.app:create_app()"])
    assert app.cfg.post_worker_init is serving.post_worker_init


def test_a_worker_freezes_what_is_alive_once_the_app_is_loaded():
    gc.unfreeze()
    try:
        serving.post_worker_init(None)
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
