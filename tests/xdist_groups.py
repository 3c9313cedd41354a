"""Scheduling of the suite on pytest-xdist workers (scripts/test.sh runs `-n N --dist loadgroup`).

Why our own: with pytest 9.2, xdist's `loadgroup` no longer groups anything (it renames node ids,
which pytest now derives; pytest-xdist issue 1386), so the tests of one `xdist_group` mark went to
every worker and each worker built their expensive session fixture again (a trained model). Here
each worker writes down the group of every test it collected, and the controller's scheduler (one
`LoadScopeScheduling` whose scope is the group, else the test itself) reads it: a group is one unit
of work, run on one worker. The tests of a module that share a module-scoped fixture form a group
of their own, so that fixture is built once. The groups and the tests marked `slow` are handed out first, so that no
long test starts last while the other worker sits idle.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ENV = "EDGEFLEET_XDIST_GROUPS"  # the folder where workers leave {node id: group} for the controller


def group_of(item: pytest.Item) -> str | None:
    """The item's xdist_group name(s), joined as xdist does; else its module's path when it uses a
    module- or class-scoped fixture (built once per module, per worker: a module spread over two
    workers would build it twice, e.g. a model trained through the CLI); None for a free test."""
    names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    if names:
        return "_".join(sorted(names))
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        if defs and defs[-1].scope in ("module", "class", "package"):
            return f"module:{item.path}"
    return None


def first_key(item: pytest.Item, groups: dict[str, str]) -> int:
    """Sort key: grouped and slow tests (0) before the rest (1); sorted() keeps each part's order."""
    return 0 if item.nodeid in groups or item.get_closest_marker("slow") else 1


class _Groups:
    def __init__(self, folder: Path, owner: bool) -> None:
        self.folder = folder
        self.owner = owner  # the controller made the folder and removes it

    @pytest.hookimpl(trylast=True)  # after every conftest has added its marks
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if not worker:
            return
        groups = {item.nodeid: g for item in items if (g := group_of(item))}
        items.sort(key=lambda item: first_key(item, groups))
        tmp = self.folder / f"{worker}.json.tmp"
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.folder / f"{worker}.json")

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        if config.getoption("dist") != "loadgroup":
            return None
        return _scheduler_class()(config, log, self.folder)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.owner:
            shutil.rmtree(self.folder, ignore_errors=True)


def _scheduler_class():
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """LoadScope whose scope is the test's xdist_group (read from the workers' notes), else the test."""

        def __init__(self, config, log, folder: Path) -> None:
            super().__init__(config, log)
            self.folder = folder
            self.groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # first call: every worker has finished collecting
                self.groups = {}
                for note in sorted(self.folder.glob("*.json")):
                    self.groups.update(json.loads(note.read_text()))
            return "group:" + self.groups[nodeid] if nodeid in self.groups else nodeid

    return GroupScheduling


def configure(config: pytest.Config) -> None:
    """Register the scheduling when xdist is loaded (call from the root conftest's pytest_configure)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = os.environ.get(ENV)
        if folder:
            config.pluginmanager.register(_Groups(Path(folder), owner=False), "edgefleet-xdist-groups")
        return
    if not config.getoption("numprocesses", None):
        return
    folder = Path(tempfile.mkdtemp(prefix="ef-xdist-groups-"))
    os.environ[ENV] = str(folder)  # the workers, started after this, inherit it
    config.pluginmanager.register(_Groups(folder, owner=True), "edgefleet-xdist-groups")
