"""workers/tasks.py warm_up: a new pool process does its one-time work before its first task."""
from __future__ import annotations

from tests.helpers import fresh_python


def _around_the_warm_up(tmp_path, imports: str, before: str, after: str) -> list[str]:
    """In a fresh Python: build the worker's Celery app (registering the warm-up), print `before` and `after`
    (Python expressions) evaluated before and after a pool process's start signal; the printed words."""
    script = (
        f"{imports}\n"
        "from pathlib import Path\n"
        "from celery.signals import worker_process_init\n"
        "from tests.conftest import make_settings\n"
        "from workers.app import create_celery\n"
        f"var = Path({str(tmp_path)!r})\n"
        "app = create_celery(make_settings(var, f'sqlite:///{var}/relay.sqlite3').replace(broker_url='memory://'))\n"
        f"before = {before}\n"
        "worker_process_init.send(sender=None)\n"
        f"print(before, {after})\n")
    return fresh_python(script)


def test_a_pool_process_configures_the_orm_mappers_before_its_first_task(tmp_path):
    """SQLAlchemy configures the mappers (their relationships and joins) on first use: in the first batch of a
    broadcast, seen in the bench's profile of the worker, unless the warm-up does it."""
    assert _around_the_warm_up(tmp_path, "from relay.model.tables import Delivery",
                               "Delivery.__mapper__.configured", "Delivery.__mapper__.configured") == ["False", "True"]


def test_a_pool_process_freezes_what_it_loaded_so_full_collections_skip_it(tmp_path):
    """After the warm-up, what a pool process has loaded (modules, services, templates) is in the collector's
    permanent generation (gc.freeze), as the web's workers do (webhooks/serving.py): in a broadcast, each full
    collection otherwise walked it all (three took ~0.5 s of a 12,000-message broadcast in one process)."""
    assert _around_the_warm_up(tmp_path, "import gc", "gc.get_freeze_count()",
                               "gc.get_freeze_count() > 100_000") == ["0", "True"]


def test_a_pool_process_collects_its_young_objects_less_often(tmp_path):
    """After the warm-up the youngest generation is collected every YOUNG_COLLECTION_THRESHOLD new objects, not
    Python's 700: a broadcast's batches drop tens of thousands of acyclic objects each (workers/tasks.py)."""
    thresholds = "','.join(map(str, gc.get_threshold()))"
    assert _around_the_warm_up(tmp_path, "import gc", thresholds, thresholds) == ["700,10,10", "20000,10,10"]


def test_a_pool_process_loads_its_publishing_side_before_its_first_task(tmp_path):
    """A worker publishes too (a relay's deliveries, a retry, a WhatsApp fallback, a raced status callback): its
    producer's first publish loaded Celery's publishing side, ~100 ms, unless the warm-up does it."""
    loaded = "'amqp' in vars(app.relay_services.get().dispatcher.app)"
    assert _around_the_warm_up(tmp_path, "", loaded, loaded) == ["False", "True"]
