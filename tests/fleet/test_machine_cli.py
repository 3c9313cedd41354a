"""`edgefleet machine`: ISO 20816 classes per device or site and bearing geometries in the fleet database;
bad input is one line (exit 2), nothing written."""

from __future__ import annotations

import json

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


def test_classes_and_bearings_round_trip(db, capsys):
    assert run(capsys, "machine", "class", "III", "--site", "north", "--db", str(db))[0] == 0
    code, out, _ = run(capsys, "machine", "class", "i", "--device", "pump-2", "--db", str(db))
    assert code == 0 and "device pump-2: ISO 20816 class I" in out
    code, out, _ = run(capsys, "machine", "bearing", "pump-1", "--balls", "9", "--ball-d", "7.94", "--pitch-d", "39.04",
                       "--db", str(db))
    assert code == 0 and "BPFO 3.585x" in out
    code, out, _ = run(capsys, "machine", "show", "--json", "--db", str(db))
    shown = json.loads(out)
    assert shown["sites"] == {"north": "III"}
    assert [(d["device"], d["iso_class"], d["from"]) for d in shown["devices"]] == [("pump-1", "III", "site"),
                                                                                     ("pump-2", "I", "device")]
    assert shown["devices"][0]["bearing"]["n_balls"] == 9
    assert run(capsys, "machine", "class", "--unset", "--device", "pump-2", "--db", str(db))[0] == 0
    assert run(capsys, "machine", "bearing", "pump-1", "--unset", "--db", str(db))[0] == 0
    s = SQLiteStore(db)
    assert s.machine_classes() == {"device": {}, "site": {"north": "III"}} and s.bearings() == {}
    s.close()


@pytest.mark.parametrize("argv, message", [
    (["class", "V", "--device", "pump-1"], "unknown ISO 20816 machine class 'V': one of I, II, III, IV"),
    (["class", "--device", "pump-1"], "give a class (I, II, III or IV) or --unset"),
    (["class", "II", "--device", "pump-9"], "device 'pump-9' is not in"),
    (["bearing", "pump-1", "--balls", "9", "--ball-d", "39.04", "--pitch-d", "7.94"], "were they swapped?"),
    (["bearing", "pump-1", "--balls", "9"], "give --balls, --ball-d and --pitch-d"),
    (["bearing", "pump-1", "--balls", "2", "--ball-d", "7", "--pitch-d", "39"], "3-60 rolling elements"),
])
def test_bad_input_is_one_line_and_writes_nothing(db, capsys, argv, message):
    code, out, err = run(capsys, "machine", *argv, "--db", str(db))
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    s = SQLiteStore(db)
    assert s.machine_classes() == {"device": {}, "site": {}} and s.bearings() == {}
    s.close()


def test_a_missing_database_is_named(tmp_path, capsys):
    code, _, err = run(capsys, "machine", "show", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no store at" in err

# ---- --site: a site no device reports from is refused in one line naming the known sites (a typo
# would leave the real site on the default class); --new-site sets a class ahead of the site's nodes


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
