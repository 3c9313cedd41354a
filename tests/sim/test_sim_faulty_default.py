"""`edgefleet sim --nodes 1` (or 2) runs: the default --faulty (3) is clamped to the plant's size;
only an explicit --faulty above --nodes is refused, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def sim(*args: str) -> subprocess.CompletedProcess:
    # a closed port and no wait: the run gets past argument checks and stops at the broker
    return subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", "mqtt://127.0.0.1:1",
                           "--wait-broker", "0", "--duration", "1", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_few_nodes_without_faulty_pass_the_checks() -> None:
    for nodes in ("1", "2"):
        run = sim("--nodes", nodes)
        assert "--faulty" not in run.stderr, run.stderr
        assert run.returncode == 2 and "cannot reach a broker" in run.stderr, run.stderr


def test_default_faulty_is_clamped_to_nodes() -> None:
    from edgefleet.commands import sim as sim_cmd

    assert sim_cmd.DEFAULT_FAULTY == 3
    import argparse

    parser = argparse.ArgumentParser()
    sim_cmd.register(parser.add_subparsers())
    assert parser.parse_args(["sim", "--nodes", "1"]).faulty is None  # decided in run(), against --nodes


def test_explicit_faulty_above_nodes_is_refused_in_one_line() -> None:
    run = sim("--nodes", "2", "--faulty", "3")
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert lines[0] == "edgefleet: error: --faulty 3: must be between 0 and --nodes (2)"
