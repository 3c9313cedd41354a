"""Fleet suite fixtures: a real Mosquitto and a real PostgreSQL for the whole session, ingest
services, stores."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgefleet.service.broker import BrokerHandle, mosquitto_binary, start_broker
from edgefleet.service.config import Settings, load_settings
from edgefleet.service.ingest import IngestService
from edgefleet.service.store import SQLiteStore

_ids = itertools.count()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    """A real Mosquitto on a free loopback port, stopped at the end of the session."""
    if not mosquitto_binary():
        pytest.fail("mosquitto is not installed: scripts/setup.sh installs it (scripts/apt-packages.txt)")
    work = tmp_path_factory.mktemp("mosquitto")
    with start_broker(prefer="mosquitto", workdir=work, log_file=work / "mosquitto.log") as broker:
        yield broker


@pytest.fixture(params=["sqlite", "postgresql"])
def open_db(request, tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Factory per backend: open_db(name="s") -> a store; the same name opens the same database again
    (another connection, as another process would). Every store it opened is closed at the end."""
    opened: list = []
    urls: dict[str, str] = {}

    def make(name: str = "s"):
        if request.param == "sqlite":
            s = SQLiteStore(tmp_path / f"{name}.db")
        else:
            from edgefleet.service.store.postgres import PostgresStore

            if name not in urls:
                urls[name] = request.getfixturevalue("pg_server").create_db()
            s = PostgresStore(urls[name])
        opened.append(s)
        return s

    make.backend = request.param
    yield make
    for s in opened:
        s.close()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique names (client ids, groups, devices) so tests on the shared broker never mix."""
    return lambda prefix: f"{prefix}-{next(_ids)}"


def ingest_settings(broker: BrokerHandle, db: Path, name: str, **kw) -> Settings:
    values = dict(broker_url=broker.url, db=str(db), ingest_client_id=f"ef-ingest-{name}",
                  ingest_group=f"g-{name}", mqtt_version=broker.mqtt_version, session_expiry_s=120,
                  sqlite_sync="NORMAL", stats_interval_s=2.0)
    values.update(kw)
    return load_settings({}, **values)


@pytest.fixture
def ingest(mosquitto: BrokerHandle, tmp_path: Path, unique) -> Iterator[Callable[..., IngestService]]:
    """Factory: start an in-process ingest service on the session broker; all stopped at the end."""
    started: list[tuple[IngestService, SQLiteStore]] = []

    def make(broker: BrokerHandle | None = None, **kw) -> IngestService:
        b = broker or mosquitto
        name = unique("t")
        settings = ingest_settings(b, tmp_path / f"{name}.db", name, **kw)
        store = SQLiteStore(settings.db, synchronous=settings.sqlite_sync)
        svc = IngestService(settings, store)
        svc.start()
        started.append((svc, store))
        return svc

    yield make
    for svc, store in started:
        svc.stop()
        store.close()
        try:
            purge_session(svc.settings.broker_host_port, svc.settings.ingest_client_id, svc.mqtt_version)
        except OSError:
            pass  # that broker is gone already, and its sessions with it


def purge_session(host_port: tuple[str, int], client_id: str, version: str = "5") -> None:
    """End a persistent session so the broker stops queueing messages for it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    if version != "5":
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True)
        c.connect(*host_port)
    else:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.connect(*host_port, clean_start=True)  # no session expiry: the session ends with this connection
    c.loop_start()
    c.disconnect()
    c.loop_stop()
