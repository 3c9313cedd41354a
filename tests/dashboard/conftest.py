"""Dashboard fixtures: a real SQLite store populated through the store API (no mocks)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from dashboards.sample_fleet import SampleFleet, populate
from edgefleet.runtime import keys
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.service.store import SQLiteStore, open_store
from edgefleet.toolchain.model_folder import ModelFolder

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboards" / "app.py")
MODEL = ROOT / "edgefleet" / "models" / "cwru-de-12k"


@pytest.fixture(autouse=True)
def _sign_in_disabled(monkeypatch) -> None:
    """These suites test the pages, not the sign-in (tests/security/test_dashboard_auth.py does): run them as
    the demo does, with sign-in off; AppTest and the `streamlit run` of snapshot.dashboard both see it."""
    monkeypatch.setenv("EDGEFLEET_DASHBOARD_AUTH", "off")


@dataclass
class FleetDB:
    path: Path
    store: SQLiteStore
    fleet: SampleFleet


@pytest.fixture
def fleet_db(tmp_path: Path) -> Iterator[FleetDB]:
    """28 machines on 7 lines, 20 minutes of history: 3 alarming, 2 degrading, 2 offline."""
    path = tmp_path / "fleet.db"
    store = open_store(path, synchronous="OFF")  # no fsync per batch: setup in a fraction of the time
    fleet = populate(store)
    yield FleetDB(path, store, fleet)
    store.close()


def chart_data(chart) -> tuple[dict, list[pd.DataFrame]]:
    """The Vega-Lite spec of an AppTest chart element and its datasets as DataFrames."""
    proto = chart.proto
    frames = [pa.ipc.open_stream(io.BytesIO(d.data.data)).read_pandas() for d in proto.datasets]
    if proto.data.data:
        frames.append(pa.ipc.open_stream(io.BytesIO(proto.data.data)).read_pandas())
    return json.loads(proto.spec), frames


def publish_shipped_model(reg: OtaRegistry) -> int:
    """Publish the shipped cwru-de-12k model (manifest verified against dev-signing.pub); its version."""
    folder = ModelFolder(MODEL)
    entry = reg.publish(folder.artifact_bytes(), folder.manifest(), folder.card(),
                        keys.load_public(ROOT / "edgefleet" / "models" / "dev-signing.pub"))
    return entry.version


def open_page(monkeypatch, db: Path, page: str | None = None, **query: str) -> AppTest:
    monkeypatch.setenv("EDGEFLEET_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    if page is not None:
        for k, v in query.items():
            at.query_params[k] = v
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}
