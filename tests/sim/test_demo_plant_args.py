"""`edgefleet demo --nodes N` with N below the default --faulty (6): the default is clamped to the
plant (it was passed to `edgefleet sim` as --faulty 6, which refused it after the broker and service
had started); an explicit --faulty above --nodes is refused in one line before anything starts."""

from __future__ import annotations

import pytest

from edgefleet.cli import build_parser, main
from edgefleet.commands.demo import check_plant
from edgefleet.errors import EdgefleetError


def demo_args(*argv: str):
    return build_parser().parse_args(["demo", *argv])


@pytest.mark.parametrize(("nodes", "faulty"), [(1, 1), (2, 2), (5, 5), (6, 6), (7, 6), (100, 6)])
def test_the_default_faulty_count_is_clamped_to_the_nodes(nodes: int, faulty: int) -> None:
    args = demo_args("--nodes", str(nodes))
    check_plant(args)
    assert args.faulty == faulty


def test_an_explicit_faulty_count_is_kept() -> None:
    args = demo_args("--nodes", "2", "--faulty", "0")
    check_plant(args)
    assert args.faulty == 0


@pytest.mark.parametrize(("argv", "words"), [
    (["--nodes", "2", "--faulty", "3"], "--faulty 3: must be between 0 and --nodes (2)"),
    (["--nodes", "4", "--faulty", "-1"], "--faulty -1: must be between 0 and --nodes (4)"),
    (["--nodes", "0"], "--nodes 0: the demo needs at least 1 machine"),
])
def test_a_bad_plant_is_refused_in_one_line_before_anything_starts(argv, words, tmp_path, capsys) -> None:
    with pytest.raises(EdgefleetError, match="must be|at least"):
        check_plant(demo_args(*argv))
    workdir = tmp_path / "demo"
    assert main(["demo", *argv, "--no-dashboard", "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert err == f"edgefleet: error: {words}\n", err
    assert not workdir.exists()  # refused before the workdir, broker or service


def test_the_simulator_commissions_over_30_s_of_the_machine_by_default():
    """64 windows at the default 1 s; at a short --period as many as span 30 s (the README's engineer
    loop runs at 0.1 s: 64 windows were 6.4 s and a healthy machine alarmed); an explicit value wins."""
    import argparse

    from edgefleet.commands import sim

    assert [sim.commission_windows_for(p) for p in (1.0, 0.5, 0.1, 0.01)] == [64, 64, 300, 3000]
    ap = argparse.ArgumentParser()
    sim.register(ap.add_subparsers())
    assert ap.parse_args(["sim", "--broker", "mqtt://x"]).commission_windows is None  # run() resolves it
    assert ap.parse_args(["sim", "--broker", "mqtt://x", "--commission-windows", "32"]).commission_windows == 32
