"""Every command's `--help` has a description, a help string per option and an example (README: "Every
command has `--help` with its defaults and an example"), built in-process from the CLI's parser; and the
human-readable output of `stats`, `replay` and `model evaluate` holds no Python reprs or unrounded floats,
while `--json` keeps every figure as it is."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from edgefleet.cli import build_parser, main
from edgefleet.commands.fleet import fmt_value, forecast_words, stats_lines
from edgefleet.protocol import ResultRecord
from edgefleet.service.alarms import forecast_from
from edgefleet.service.store import DeviceUpdate, IngestBatch, SQLiteStore

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r"^\s*(examples?:\s*)?([A-Z_]+=\S*\s+)*edgefleet \S", re.M)
REPR = re.compile(r"[{}\[\]]|\bNone\b|'\w+':|\d\.\d{4,}")


def parsers(p: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from parsers(sp, (*path, name))


def is_leaf(p: argparse.ArgumentParser) -> bool:
    return not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)


def help_problems(path: tuple[str, ...], p: argparse.ArgumentParser) -> list[str]:
    name = " ".join(path)
    out = [] if (p.description or "").strip() else [f"{name}: no description"]
    for a in p._actions:
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if not (a.help or "").strip():
            out.append(f"{name}: {a.option_strings[0] if a.option_strings else a.dest} has no help")
    if is_leaf(p) and not EXAMPLE.search(p.epilog or ""):
        out.append(f"{name}: no example")
    return out


def test_every_command_has_a_description_option_help_and_an_example(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    problems, seen = [], set()
    for path, p in parsers(build_parser()):
        if not path:
            continue
        seen.add(path[0])
        text = p.format_help()  # renders without error
        problems.extend(help_problems(path, p))
        if is_leaf(p):  # example lines are printed whole: copyable
            for line in (p.epilog or "").splitlines():
                if line.strip().startswith("edgefleet ") or "edgefleet " in line and line.startswith("  "):
                    assert line in text.splitlines(), f"{' '.join(path)}: example {line!r} was re-wrapped"
    assert {"ota", "pki", "machine", "demo"} <= seen  # every command is walked, none skipped
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("command", [
    "serve", "stats", "broker", "bridge", "replay", "model import", "model run", "model card", "model evaluate",
    "keys generate", "keys show", "keys verify", "keys retire", "keys list", "device add", "device revoke",
    "alarms list", "notify check", "notify log", "users add", "audit", "commission",
    "ota publish", "ota rollout", "ota status", "ota abort", "pki init", "pki issue", "pki revoke", "pki list",
    "machine bearing", "machine name", "machine tag", "machine show", "demo"])
def test_the_reviewed_commands_show_an_example_and_their_defaults(command, capsys) -> None:
    with pytest.raises(SystemExit):
        main([*command.split(), "--help"])
    text = capsys.readouterr().out
    assert re.search(rf"^  (\S+=\S+ )?edgefleet {command}\b", text, re.M), text
    if command == "broker":
        assert "(default 1883)" in text and "(default 127.0.0.1" in text and "(default auto" in text
    if command == "model import":
        assert "--version" in text and "(default 1)" in text and "(default fp32)" in text
    if command == "demo":
        assert re.search(r"--dashboard-port DASHBOARD_PORT\s+port of the dashboard .*\(default 8501", text)
    if command == "ota status":
        assert re.search(r"--json\s+print one JSON object", text) and re.search(r"campaign\s+campaign id", text)
    if command == "pki revoke":
        assert re.search(r"name\s+the client certificate's name", text)
    if command == "keys show":
        assert re.search(r"--key KEY\s+private key file \(default", text)


# ---------- human-readable output ----------

def test_values_are_rounded_and_never_reprs() -> None:
    assert fmt_value(8.271045964384685) == "8.27" and fmt_value(-3.6762098458315116) == "-3.68"
    assert fmt_value(None) == "-" and fmt_value(30.0) == "30" and fmt_value({}) == "-" and fmt_value([]) == "-"
    assert fmt_value({"bad_json": 3, "too_old": 2}) == "bad_json 3, too_old 2"
    f = {"source": "windows", "horizon": "from the last 4 hours of windows (120 points)", "points": 120,
         "span_s": 14400.0, "level_ratio": 0.8271045964384685, "slope_per_day": 3.6762098458315116,
         "t_stat": 5.123456, "eta_s": 3 * 86400.0, "state": "rising"}
    assert forecast_words(f) == ("from the last 4 hours of windows (120 points): reaches the alarm level in about "
                                 "3 days at this trend; level 0.827 x threshold; slope +3.68 per day (t 5.12)")
    lines = stats_lines({"results": 10, "models": {"1": 6, "2": 4}, "settle_s": 900.0, "retention_days": 30.0,
                         "lossy_devices": {"a": {"received": 6, "missing": 1}}})
    assert lines == ["results          10", "models           v1 on 6 devices, v2 on 4 devices",
                     "settle           900.0 s", "retention        30 days", "lossy_devices    1",
                     "  a              received 6, missing 1"]


def test_a_forecast_from_one_point_says_so() -> None:
    one = forecast_from([1_000_000], [0.5], "rollup_1h", "hourly rollups", 2_000_000)
    assert one.horizon == "from 1 point of hourly rollups" and one.state == "too_few" and one.level_ratio is None
    assert forecast_from([], [], "rollup_1h", "hourly rollups", 0).horizon == "no hourly rollups"
    same = forecast_from([5, 5, 5], [0.5, 0.6, 0.7], "windows", "windows", 10)
    assert same.horizon == "from 3 points of windows, all at one time" and same.state == "too_few"


@pytest.fixture
def small_store(tmp_path: Path) -> Path:
    """One device, two model versions over 40 results an hour ago: one hourly rollup, a short trend."""
    db = tmp_path / "s.db"
    s = SQLiteStore(db)
    t0 = int(time.time() * 1000) - 3_600_000
    rs = [ResultRecord("v2-0001", "b1", i, t0 + 1000 * i, 2, 0.3 * (1 + i / 400), 1.0, False, 5) for i in range(40)]
    s.write_batch(IngestBatch(ingest_ts=t0, results=rs,
                              devices=[DeviceUpdate("v2-0001", t0, status="online", boot="b1")]))
    s.write_batch(IngestBatch(ingest_ts=t0, devices=[DeviceUpdate("v1-0001", t0, status="online", boot="b1")]))
    s.close()
    return db


def test_stats_prints_aligned_rounded_lines_and_json_keeps_everything(small_store: Path, capsys) -> None:
    assert main(["stats", "--db", str(small_store), "--device", "v2-0001"]) == 0
    out = capsys.readouterr().out
    assert not REPR.search(out), out
    lines = out.splitlines()
    assert "models           v2 on 1 device" in lines and "settle           900.0 s" in lines
    assert "device           v2-0001" in lines
    assert "  loss           received 40, missing 0, pending 0, dropped on node 0, seq jumps 0, boots 1" in lines
    short = next(ln for ln in lines if ln.startswith("  short trend"))
    assert re.fullmatch(r"  short trend    from the last 39 seconds of windows \(40 points\): [a-z ]+"
                        r"(; level [-+0-9.e]+ x threshold; slope [-+0-9.e]+ per day \(t [-+0-9.e]+\))?", short), short
    assert "  long trend     from 1 point of hourly rollups: too few points for a trend" in lines
    assert main(["stats", "--db", str(small_store), "--device", "v2-0001", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["models"] == {"2": 1} and got["settle_s"] == 900.0 and got["rejects_by_code"] == {}
    fc = got["device"]["forecasts"]
    assert [f["source"] for f in fc] == ["windows", "rollup_1h"] and fc[1]["level_ratio"] is None
    assert fc[0]["points"] == 40 and isinstance(fc[0]["span_s"], float)
    assert main(["stats", "--db", str(small_store)]) == 0
    out = capsys.readouterr().out
    assert not REPR.search(out) and "lossy_devices    -" in out.splitlines(), out


def vibration(fs: float, seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    x = 0.15 * np.sin(2 * np.pi * 30 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)
    return (x + 0.02 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


def test_replay_prints_seconds_with_one_decimal_and_words_for_none(tmp_path: Path, capsys) -> None:
    model = REPO / "edgefleet" / "models" / "fleet-default"
    np.savez(tmp_path / "r.npz", signal=vibration(12000.0, 4.0), fs=12000.0, rpm=1800.0)
    assert main(["replay", str(model), "--data", str(tmp_path / "r.npz"), "--commission-windows", "16"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  commissioned at \d+\.\d s: 16 windows at ", out, re.M), out
    assert re.search(r"alarms: (none raised|\d+ raised, the first at \d+\.\d s)$", out, re.M), out
    assert "None" not in out and not re.search(r"\d\.\d{4,}", out), out


def test_evaluate_names_the_missing_key_and_what_a_recording_holds(tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "r.npz", signal=vibration(12000.0, 1.0), fs=12000.0)
    assert main(["model", "evaluate", str(REPO / "edgefleet/models/fleet-default"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "r.npz has no label: a recording must hold signal (the samples), fs (the sampling rate in Hz) and " \
           "label ('normal' or the fault's name)" in err, err
    assert "[" not in err.split("edgefleet data import")[0], err
