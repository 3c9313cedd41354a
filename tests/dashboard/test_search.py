"""Search the fleet by device id, friendly name, site, line or tag (issue 17, item 5): names and tags set with
`edgefleet machine name|tag` (kept in the store apart from the node's own tags), the loader as a pure
function on a real SQLite, the Fleet page through AppTest, and typing into the search box in Chromium."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from dashboards.loaders import fleet
from dashboards.snapshot import chromium, dashboard
from edgefleet.cli import main
from edgefleet.service.store import DeviceUpdate, IngestBatch, open_store

from .conftest import open_page
from .test_health_stage import make_degrading

GRID_TEXT_JS = "Array.from(document.querySelectorAll('[role=gridcell]')).map(e => e.textContent).join('\\n')"


def cli(*argv: str) -> int:
    return main(["machine", *argv])


@pytest.fixture
def named(fleet_db):
    """Two machines named and tagged through the CLI, as an engineer would."""
    f, db = fleet_db.fleet, str(fleet_db.path)
    a, b = f.alarm[0], f.degrading[0]
    make_degrading(fleet_db.store, [b])  # both need attention
    assert cli("name", a, "Cooling pump 3", "--db", db) == 0
    assert cli("tag", a, "type=pump", "room=B2", "--db", db) == 0
    assert cli("name", b, "Extract fan", "--db", db) == 0
    assert cli("tag", b, "type=fan", "room=B2", "--db", db) == 0
    return fleet_db, a, b


def test_machine_name_and_tag_commands(named, capsys) -> None:
    fleet_db, a, b = named
    db = str(fleet_db.path)
    assert fleet_db.store.machine_meta()[a] == {"name": "Cooling pump 3", "tags": {"room": "B2", "type": "pump"}}
    assert cli("tag", a, "--remove", "room", "--db", db) == 0
    assert fleet_db.store.machine_meta()[a]["tags"] == {"type": "pump"}
    assert cli("name", b, "--unset", "--db", db) == 0
    assert "name" not in fleet_db.store.machine_meta()[b]
    capsys.readouterr()
    assert cli("show", "--json", "--db", db) == 0
    shown = {d["device"]: d for d in json.loads(capsys.readouterr().out)["devices"]}
    assert shown[a]["name"] == "Cooling pump 3" and shown[a]["tags"] == {"type": "pump"}
    # a status from the node rewrites its own tags, never the ones people set
    fleet_db.store.write_batch(IngestBatch(1, 1, devices=[DeviceUpdate(a, 1, tags=("fan",))]))
    assert fleet_db.store.machine_meta()[a]["tags"] == {"type": "pump"}


@pytest.mark.parametrize("argv, message", [
    (("name", "no-such-device", "X"), "is not in"),
    (("name", "{dev}"), "give a name"),
    (("name", "{dev}", "  "), "at least one visible character"),
    (("name", "{dev}", "x" * 81), "at most 80"),
    (("name", "{dev}", "line\nbreak\x07"), "printable"),
    (("tag", "{dev}"), "KEY=VALUE"),
    (("tag", "{dev}", "novalue"), "key=value"),
    (("tag", "{dev}", "9key=x"), "key=value"),
    (("tag", "{dev}", "key="), "the value is 1-100"),
    (("tag", "{dev}", "--remove", "absent"), "no tag 'absent'"),
])
def test_bad_names_and_tags_are_one_line_exit_2(tmp_path, capsys, argv, message) -> None:
    path, dev = tmp_path / "f.db", "pump-0001"
    store = open_store(path, synchronous="OFF")
    store.write_batch(IngestBatch(1, 1, devices=[DeviceUpdate(dev, 1, status="online")]))
    store.close()
    code = cli(*[a.replace("{dev}", dev) for a in argv], "--db", str(path))
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_search_loader_matches_every_word_in_id_name_site_line_and_tags(named) -> None:
    fleet_db, a, b = named
    df = fleet.fleet_frame(fleet_db.store, int(time.time() * 1000))
    hits = lambda q: set(fleet.search(df, q)["device"])  # noqa: E731
    assert hits("") == hits(None) == set(df["device"])
    assert hits(a) == {a}  # by id
    assert hits("cooling PUMP") == {a}  # by name, case-insensitive, every word
    assert hits("type=fan") == {b}  # by a tag people set
    assert hits("room=b2") == {a, b}
    site = df.set_index("device").loc[a, "site"]
    assert hits(site) == set(df[df["site"] == site]["device"])  # by site
    assert hits(f"{site} room=b2") == {d for d in (a, b) if df.set_index("device").loc[d, "site"] == site}
    node_tag = next(t for t in df["tags"] if t and "=" not in t.split(",")[0]).split(",")[0]  # the node's own tag
    assert hits(node_tag) and all(node_tag in t for t in df[df["device"].isin(hits(node_tag))]["tags"])
    assert hits("nothing-like-this") == set()
    assert fleet.label(a, "Cooling pump 3") == f"{a} (Cooling pump 3)" and fleet.label(a, "") == a


def test_fleet_page_search_filters_the_grid_and_lists_the_matches(monkeypatch, named) -> None:
    monkeypatch.setenv("EDGEFLEET_DASHBOARD_AUTH", "off")
    fleet_db, a, b = named
    at = open_page(monkeypatch, fleet_db.path)
    at.text_input(key="fleet_search").input("room=B2").run()
    assert not at.exception
    assert any("Machines matching" in h.value and ": 2" in h.value for h in at.subheader)
    matches = at.dataframe[0].value  # the matches, above the grid
    assert set(matches["device"]) == {a, b} and set(matches["name"]) == {"Cooling pump 3", "Extract fan"}
    assert at.query_params["q"] == ["room=B2"] or at.query_params["q"] == "room=B2"  # a bookmarkable search
    assert set(at.dataframe[1].value["device"]) == {a, b}  # the attention list: the matches only
    at.text_input(key="fleet_search").input("").run()
    assert not any("Machines matching" in h.value for h in at.subheader)


@pytest.mark.timeout(120)
def test_search_in_chromium(named) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed (apt-get install chromium)", pytrace=False)
    fleet_db, a, b = named
    with dashboard(fleet_db.path) as url, chromium() as browser:
        browser.open(url, 1280, 800)
        browser.wait_for("document.body.innerText.includes('Needs attention')", 60, "the fleet page")
        box = "document.querySelector('.st-key-fleet_search input')"
        browser.wait_for(f"!!{box}", 30, "the search box")
        browser.eval(f"{box}.focus()")
        browser.send("Input.insertText", {"text": "extract fan"})
        browser.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Enter", "code": "Enter",
                                                "windowsVirtualKeyCode": 13})
        browser.wait_for("document.body.innerText.includes('Machines matching')", 30, "the search results")
        browser.wait_for(f"{GRID_TEXT_JS}.includes('Extract fan')", 30, "the match in the results table")
        assert "q=extract+fan" in browser.eval("location.href") or "q=extract%20fan" in browser.eval("location.href")
        grid = browser.eval(GRID_TEXT_JS)
        assert b in grid and a not in grid
