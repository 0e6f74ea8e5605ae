"""The embedded broker keeps every message: a consumer polling while a publisher writes sees a whole
message or none (kombu's own filesystem transport hands it an empty file and the task is lost), and a
queue bound while another process creates the exchange file does not crash the worker."""
from __future__ import annotations

from queue import Empty

import pytest
from kombu import Connection
from kombu.transport import filesystem

from relay.infra import broker_files

RELAY = "relay.infra.broker_files:Transport"
KOMBU = "filesystem"


def connect(tmp_path, transport: str) -> Connection:
    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
    return Connection("filesystem://localhost//", transport=transport, transport_options={
        "data_folder_in": str(folders["queue"]), "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]), "control_folder": str(folders["control"]),
        "store_processed": False})


def publish_while_a_consumer_polls(tmp_path, monkeypatch, transport: str, module) -> tuple[object, list]:
    """Publish one message; at the moment the payload is encoded (the file may already be in the
    folder), a second connection polls the queue, as a worker in another process would."""
    with connect(tmp_path, transport) as producer_conn, connect(tmp_path, transport) as consumer_conn:
        consumer = consumer_conn.default_channel
        during: list = []
        real_dumps = module.dumps

        def dumps_while_polled(payload):
            try:
                during.append(consumer._get("inbound"))
            except Empty:
                during.append(None)
            except ValueError as exc:  # the half-written file, read as JSON
                during.append(exc)
            return real_dumps(payload)

        monkeypatch.setattr(module, "dumps", dumps_while_polled)
        producer_conn.default_channel._put("inbound", {"body": "task"})
        monkeypatch.setattr(module, "dumps", real_dumps)
        try:
            after = consumer._get("inbound")
        except Empty:
            after = None
        return after, during


def test_a_consumer_never_sees_a_message_before_it_is_whole(tmp_path, monkeypatch):
    after, during = publish_while_a_consumer_polls(tmp_path, monkeypatch, RELAY, broker_files)
    assert during == [None]  # nothing to take while the message is being written
    assert after == {"body": "task"}  # and then the whole message
    assert not [p for p in (tmp_path / "queue").iterdir()]  # no temporary file left behind


def test_kombus_own_transport_loses_that_message(tmp_path, monkeypatch):
    """The control: the same poll against kombu's transport takes the empty file and the message is
    gone (kombu issue #1551). If kombu fixes this, relay.infra.broker_files can go."""
    after, during = publish_while_a_consumer_polls(tmp_path, monkeypatch, KOMBU, filesystem)
    assert isinstance(during[0], ValueError) and after is None


@pytest.mark.parametrize("content", [b"", b"  "])
def test_binding_to_an_exchange_file_another_process_just_created(tmp_path, content):
    with connect(tmp_path, RELAY) as conn:
        channel = conn.default_channel
        (tmp_path / "control" / "relay.exchange").write_bytes(content)
        assert channel.get_table("relay") == []
        channel._queue_bind("relay", "inbound", None, "inbound")
        channel._queue_bind("relay", "outbound", None, "outbound")
        channel._queue_bind("relay", "inbound", None, "inbound")  # twice: still one binding
        assert [q.queue for q in channel.get_table("relay")] == ["outbound", "inbound"]


def test_kombus_own_bind_fails_on_that_file(tmp_path):
    with connect(tmp_path, KOMBU) as conn:
        (tmp_path / "control" / "relay.exchange").write_bytes(b"")
        with pytest.raises(ValueError):
            conn.default_channel._queue_bind("relay", "inbound", None, "inbound")


def test_celery_uses_it_on_the_embedded_broker(tmp_path):
    from relay.infra.dispatch import celery_config
    from relay.infra.settings import Settings

    settings = Settings.from_env({"RELAY_VAR_DIR": str(tmp_path)})
    assert settings.embedded_broker
    config = celery_config(settings)
    assert config["broker_transport"] == RELAY
    with Connection(config["broker_url"], transport=config["broker_transport"],
                    transport_options=config["broker_transport_options"]) as conn:
        assert isinstance(conn.default_channel, broker_files.Channel)
