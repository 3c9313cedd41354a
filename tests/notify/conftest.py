"""Notification suite fixtures: a throwaway PostgreSQL for the store cases (tests/pg.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def pg_server() -> Iterator:
    """A real PostgreSQL on a free loopback port for the session; its cases skip, saying why, without one."""
    from pg import PgServer, missing_reason

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = PgServer()
    try:
        yield server
    finally:
        server.stop()
