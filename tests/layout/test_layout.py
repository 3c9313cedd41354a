"""The layout stays true: every module imports, and imports point one way (docs/ARCHITECTURE.md).

    commands -> service | toolchain | device -> runtime -> protocol -> errors, clock

`device_sim/` and `dashboards/` sit on top and import edgefleet, never the reverse, except that
the CLI's command modules may load them lazily (inside a function).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOP = ("edgefleet", "device_sim", "dashboards")
# Streamlit pages run top to bottom as scripts; importing one outside `streamlit run` would draw it.
SCRIPTS = {"edgefleet.__main__", "dashboards.app"}

# layer -> the edgefleet layers it must not import (at module level or inside functions)
FORBIDDEN = {
    "edgefleet.errors": {"*"},
    "edgefleet.clock": {"*"},
    "edgefleet.protocol": {"runtime", "toolchain", "service", "device", "commands", "cli"},
    "edgefleet.runtime": {"toolchain", "service", "device", "commands", "cli"},
    "edgefleet.toolchain": {"service", "device", "commands", "cli"},
    "edgefleet.service": {"toolchain", "device", "commands", "cli"},
    "edgefleet.device": {"toolchain", "service", "commands", "cli"},
    "device_sim": {"toolchain", "service", "commands", "cli"},
    "dashboards": {"device", "commands", "cli"},
}


def all_modules() -> list[str]:
    names = []
    for top in TOP:
        pkg = importlib.import_module(top)
        names.append(top)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, top + ".")]
    return sorted(n for n in names if n not in SCRIPTS and not n.startswith("dashboards.views."))


def source_files() -> list[tuple[str, Path]]:
    out = []
    for top in TOP:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out.append((".".join(parts), path))
    return out


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level?) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "edgefleet":  # from edgefleet import protocol, clock
                found += [(f"edgefleet.{a.name}", node.lineno, id(node) in top_level) for a in node.names]
            else:
                found.append((node.module, node.lineno, id(node) in top_level))
    return found


def layer_of(module: str) -> str | None:
    for layer in sorted(FORBIDDEN, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


@pytest.mark.parametrize("name", all_modules())
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def violations() -> list[str]:
    bad = []
    for module, path in source_files():
        layer = layer_of(module)
        for target, line, top_level in imports_of(path):
            where = f"{path.relative_to(REPO)}:{line} imports {target}"
            if module.startswith("edgefleet") and target.split(".")[0] in ("device_sim", "dashboards"):
                if not (module.startswith("edgefleet.commands.") and not top_level):
                    bad.append(where + " (edgefleet loads the simulator and dashboard only lazily, from commands)")
                continue
            if layer is None or not target.startswith("edgefleet"):
                continue
            sub = target.split(".")[1] if "." in target else ""
            banned = FORBIDDEN[layer]
            if "*" in banned or sub in banned:
                bad.append(f"{where} ({layer} must not import edgefleet.{sub})")
    return bad


def test_imports_point_one_way() -> None:
    assert violations() == []


def test_the_checker_sees_a_wrong_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard against a checker that passes because it reads nothing."""
    fake = tmp_path / "runtime_mod.py"
    fake.write_text("from edgefleet.service.ingest import IngestService\n")
    assert ("edgefleet.service.ingest", 1, True) in imports_of(fake)
    assert layer_of("edgefleet.runtime.engine") == "edgefleet.runtime"
    assert "service" in FORBIDDEN[layer_of("edgefleet.runtime.engine")]
    assert len(source_files()) > 50
