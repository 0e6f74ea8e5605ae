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


def _connections_to(url: str) -> int:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(url)
    with admin.connect() as conn:
        found = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> "
                                  "pg_backend_pid()"), {"db": make_url(url).database}).scalar()
    admin.dispose()
    return found


def _served(tmp_path, url: str, broker_url: str, threads: int):
    from types import SimpleNamespace

    from relay.services import build_services
    from tests.conftest import make_settings
    from webhooks.app import create_app

    settings = make_settings(tmp_path / "var", url, broker_url=broker_url, broker_prefix="relay-test-warm-up:")
    services = build_services(settings)
    return services, SimpleNamespace(wsgi=create_app(services=services), cfg=SimpleNamespace(threads=threads))


def test_a_sync_worker_opens_its_insert_connection_the_doorbell_and_the_publisher_before_its_first_webhook(
        tmp_path, postgres_only_url, redis_url):
    services, worker = _served(tmp_path, postgres_only_url, redis_url, threads=1)
    doorbell = services.dispatcher.doorbell
    before = _connections_to(postgres_only_url)
    assert doorbell.client.connection_pool._created_connections == 0
    assert "amqp" not in vars(services.dispatcher.app)
    serving.post_worker_init(worker)
    assert _connections_to(postgres_only_url) == before + 1  # the kept insert connection, open and idle
    assert doorbell.client.connection_pool._created_connections == 1
    assert "amqp" in vars(services.dispatcher.app)  # Celery's publishing side, loaded for the first drain task
    services.dispose()
    gc.unfreeze()


def test_a_threaded_worker_leaves_the_per_thread_insert_connection_to_its_request_threads(
        tmp_path, postgres_only_url, redis_url):
    services, worker = _served(tmp_path, postgres_only_url, redis_url, threads=4)
    before = _connections_to(postgres_only_url)
    serving.post_worker_init(worker)
    assert _connections_to(postgres_only_url) == before
    assert services.dispatcher.doorbell.client.connection_pool._created_connections == 1
    services.dispose()
    gc.unfreeze()


def test_a_warm_up_that_fails_is_logged_and_the_worker_serves_on(tmp_path, postgres_only_url, caplog):
    services, worker = _served(tmp_path, postgres_only_url, "redis://127.0.0.1:9/0", threads=1)  # nothing there
    serving.post_worker_init(worker)  # no exception: the first webhook will open what it needs
    assert any("warm-up: " in r.getMessage() for r in caplog.records)
    services.dispose()
    gc.unfreeze()


# ---------------------------------------------------------------- granian (relay web --server granian)


def test_granian_accepts_relay_webs_options():
    """granian's own command line parses what `relay web --server granian` passes it."""
    from granian.cli import cli

    from relay.cli.common import granian_options

    options = granian_options(1, 4)
    context = cli.make_context("granian", [*options, "--factory", "webhooks.serving:granian_app"])
    assert context.params["interface"] == "wsgi" and context.params["factory"] is True
    assert context.params["workers"] == 1 and context.params["blocking_threads"] == 4
    assert context.params["http"].value == "1" and context.params["workers_kill_timeout"] == 10
    assert context.params["websockets"] is False and context.params["log_access_enabled"] is False  # relay writes its own


def test_granians_worker_gets_the_app_with_its_access_log_warmed_up_and_frozen(tmp_path, postgres_only_url,
                                                                               redis_url):
    from webhooks.access_log import AccessLog

    services, worker = _served(tmp_path, postgres_only_url, redis_url, threads=4)
    before = _connections_to(postgres_only_url)
    gc.unfreeze()
    app = serving.granian_app(worker.wsgi)
    assert isinstance(app.wsgi_app, AccessLog)
    assert gc.get_freeze_count() > 1000
    assert _connections_to(postgres_only_url) == before  # per thread: opened by each request thread
    assert services.dispatcher.doorbell.client.connection_pool._created_connections == 1
    services.dispose()
    gc.unfreeze()


def test_relay_web_refuses_an_unknown_server(monkeypatch):
    import click
    import pytest

    from relay.cli.serve import web_server

    monkeypatch.setenv("RELAY_WEB_SERVER", "Gunicorn ")
    assert web_server() == "gunicorn"
    monkeypatch.setenv("RELAY_WEB_SERVER", "")
    assert web_server() == "granian"  # the default
    monkeypatch.setenv("RELAY_WEB_SERVER", "uwsgi")
    with pytest.raises(click.ClickException, match="RELAY_WEB_SERVER='uwsgi': choose gunicorn or granian"):
        web_server()


def test_relay_webs_defaults_per_server():
    """granian: one process per two cores (at least one), 4 threads; gunicorn: a sync worker per core, plus one."""
    from relay.cli.common import cores, web_defaults

    assert web_defaults("granian") == (max(1, cores() // 2), 4)
    assert web_defaults("gunicorn") == (cores() + 1, 1)
