"""`edgefleet machine class --site`: a site no device reports from is refused in one line naming the
known sites (a typo would leave the real site on the default class); --new-site sets a class ahead of
the site's nodes."""

from __future__ import annotations

import pytest

from edgefleet.cli import main
from edgefleet.service.store import DeviceUpdate, IngestBatch, SQLiteStore


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "fleet.db"
    s = SQLiteStore(path)
    s.write_batch(IngestBatch(1, 2, devices=[DeviceUpdate("pump-1", 1, site="north"),
                                             DeviceUpdate("pump-2", 1, site="south")]))
    s.close()
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def site_classes(db) -> dict:
    s = SQLiteStore(db)
    try:
        return s.machine_classes()["site"]
    finally:
        s.close()


def test_an_unknown_site_is_refused_naming_the_known_ones(db, capsys):
    code, out, err = run(capsys, "machine", "class", "III", "--site", "nosuchsite", "--db", str(db))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and out == ""
    assert "no device at site 'nosuchsite'" in err and "(sites: north, south)" in err and "--new-site" in err
    assert site_classes(db) == {}


def test_new_site_sets_a_class_ahead_of_its_nodes(db, capsys):
    code, out, _ = run(capsys, "machine", "class", "III", "--site", "west", "--new-site", "--db", str(db))
    assert code == 0 and "site west: ISO 20816 class III" in out
    # once it has a class, the site is known: changed or unset without --new-site
    assert run(capsys, "machine", "class", "IV", "--site", "west", "--db", str(db))[0] == 0
    assert site_classes(db) == {"west": "IV"}
    assert run(capsys, "machine", "class", "--unset", "--site", "west", "--db", str(db))[0] == 0
    assert site_classes(db) == {}


def test_a_reported_site_needs_no_flag(db, capsys):
    assert run(capsys, "machine", "class", "III", "--site", "north", "--db", str(db))[0] == 0
    assert site_classes(db) == {"north": "III"}


@pytest.mark.parametrize("argv, message", [
    (["class", "--unset", "--site", "nosuchsite"], "site 'nosuchsite' has no class set"),
    (["class", "II", "--device", "pump-1", "--new-site"], "--new-site goes with --site"),
])
def test_other_misuse_is_one_line(db, capsys, argv, message):
    code, _, err = run(capsys, "machine", *argv, "--db", str(db))
    assert code == 2 and message in err and err.count("\n") == 1
    assert site_classes(db) == {}
