"""One default database for every command (serve, stats, ota, commission, doctor, the dashboard):
run them without --db and they all meet in the same file."""

from __future__ import annotations

import argparse

from edgefleet.cli import build_parser
from edgefleet.service.config import DEFAULT_DB, default_db, load_settings


def parsed(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_every_command_defaults_to_the_same_store(monkeypatch):
    monkeypatch.delenv("EDGEFLEET_DB", raising=False)
    assert load_settings({}).db == DEFAULT_DB == default_db({})
    assert str(parsed("ota", "status").db) == DEFAULT_DB
    assert str(parsed("commission", "dev-1").db) == DEFAULT_DB
    from dashboards.loaders.common import resolve_db

    assert str(resolve_db([], {})[0]) == DEFAULT_DB


def test_the_environment_moves_them_all_together(monkeypatch, tmp_path):
    db = str(tmp_path / "plant.db")
    assert load_settings({"EDGEFLEET_DB": db}).db == db
    monkeypatch.setenv("EDGEFLEET_DB", db)
    assert str(parsed("ota", "status").db) == db and str(parsed("commission", "d").db) == db
    from dashboards.loaders.common import resolve_db

    assert str(resolve_db([], {"EDGEFLEET_DB": db})[0]) == db
