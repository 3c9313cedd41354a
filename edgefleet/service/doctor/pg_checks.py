"""The store when it is a PostgreSQL database (--db postgresql://...): reachable, schema version,
results, read without changing anything (no migration). The URL is shown with its password masked."""

from __future__ import annotations

from edgefleet.service.doctor.report import Check
from edgefleet.service.store.url import mask_url


def run_pg_checks(url: str) -> list[Check]:
    from edgefleet.errors import EdgefleetError
    from edgefleet.service.store.postgres import SCHEMA_VERSION, connect, schema_version

    shown = mask_url(url)
    try:
        conn = connect(url, migrate_schema=False, timeout_s=5)
    except EdgefleetError as exc:
        return [Check("store.postgresql", "fail", str(exc), "check the host, port, user, password and database "
                      "in --db (EDGEFLEET_DB); `edgefleet serve` cannot store anything, so it acknowledges nothing"),
                Check("store.schema", "skip", "no store to read"),
                Check("clock.skew", "skip", "no store with results to read")]
    try:
        v = schema_version(conn)
        results = conn.execute("SELECT count(*) FROM results").fetchone()[0] if v > 0 else 0
        server = conn.execute("SHOW server_version").fetchone()[0]
    finally:
        conn.close()
    checks = [Check("store.postgresql", "pass", f"{shown}: PostgreSQL {server}, {results:,} results")]
    if v < 0:
        checks.append(Check("store.schema", "fail", f"{shown} has a results table but no edgefleet schema_version: "
                            "`edgefleet serve` refuses it", "point --db at an empty database or at the fleet's"))
    elif v > SCHEMA_VERSION:
        checks.append(Check("store.schema", "fail", f"schema version {v} is newer than this edgefleet's "
                            f"({SCHEMA_VERSION}): `edgefleet serve` refuses to open it, so nothing is ingested",
                            "upgrade edgefleet on this host to the version that wrote the database"))
    elif v == SCHEMA_VERSION:
        checks.append(Check("store.schema", "pass", f"schema version {v} (this edgefleet's)"))
    elif v == 0:
        checks.append(Check("store.schema", "pass", f"empty database: `edgefleet serve` creates schema version "
                            f"{SCHEMA_VERSION}"))
    else:
        checks.append(Check("store.schema", "warn", f"schema version {v} is older than this edgefleet's "
                            f"({SCHEMA_VERSION}): `edgefleet serve` migrates it on its next start, after which older "
                            "edgefleet versions cannot open it", "back the database up first (pg_dump)"))
    checks.append(Check("clock.skew", "skip", "the clock check reads SQLite stores only so far"))
    return checks
