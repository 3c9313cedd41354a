"""Suite-wide fixtures: where the shared data lives, and a per-test signing key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGEFLEET_DATA", REPO.parent / "shared" / "data"))
CWRU = DATA / "cwru"


def pytest_configure(config: pytest.Config) -> None:
    """Parallel runs (scripts/test.sh: pytest-xdist) keep each xdist_group on one worker."""
    import xdist_groups

    xdist_groups.configure(config)


@pytest.fixture(autouse=True)
def _stop_leaked_servers():
    """A test that fails half-way may leave `edgefleet serve`, a broker or a benchmark running (its
    stop was after the failed assert): stop what the test started and left, so it does not load the
    CPU for the rest of the run. Session and module servers are started before this runs, so they
    are not touched; a passing test that cleans up leaves nothing here."""
    from testkit import child_processes, kill_tree

    before = set(child_processes())
    yield
    for pid in set(child_processes()) - before:
        kill_tree(pid)


@pytest.fixture(scope="session")
def cwru_dir() -> Path:
    if not CWRU.is_dir():
        pytest.fail(f"CWRU development data not found at {CWRU} (set EDGEFLEET_DATA)")
    return CWRU


@pytest.fixture(scope="session", autouse=True)
def _isolated_signing_key(tmp_path_factory):
    """Never touch the developer's real key: the whole session signs with a throwaway key."""
    key = tmp_path_factory.mktemp("keys") / "signing.key"
    import edgefleet.runtime.keys as keys

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEFLEET_SIGNING_KEY", str(key))
        mp.setattr(keys, "DEFAULT_KEY", key)
        yield key


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory) -> dict[str, bytes]:
    """The parity shapes (edgefleet.toolchain.testmodels.PARITY_SHAPES) as int8 .tflite, built once per
    run (TensorFlow conversion: the first xdist worker builds, the others read its copy)."""
    from edgefleet.toolchain.testmodels import make_parity_models

    return once_per_run(tmp_path_factory, "tflite-models", make_parity_models)


def once_per_run(tmp_path_factory, name: str, build):
    """`build()` once per test run, also across pytest-xdist workers: the first one builds under a
    lock and pickles the value into the run's shared temporary folder; the others load it."""
    import fcntl
    import pickle

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build()
    shared = tmp_path_factory.getbasetemp().parent  # pytest-N/, above each worker's popen-gwK/
    with open(shared / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = shared / f"{name}.pickle"
        if path.is_file():
            return pickle.loads(path.read_bytes())
        value = build()
        path.write_bytes(pickle.dumps(value))
        return value


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL (tests/pg.py) on a free loopback port, one for the whole session (the store,
    ingest and notification suites share it), stopped at the end; the PostgreSQL cases skip, saying
    why, where its binaries are not installed."""
    from pg import PgServer, missing_reason

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = PgServer()
    try:
        yield server
    finally:
        server.stop()
