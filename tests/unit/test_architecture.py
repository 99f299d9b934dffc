"""Imports point one way: streams -> online_models, alerts. The pure packages stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"faust", "aiokafka", "kafka", "redis", "streams", "mode"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", ["online_models", "alerts"])
def test_pure_packages_import_no_io(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    offenders = {str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN) for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import redis\nfrom faust import App\nfrom . import x\n")
    assert imported_roots(sample) == {"redis", "faust"}


def test_the_package_map_matches_the_code() -> None:
    """docs/architecture.{md,svg} are generated; a change of imports must redraw them."""
    import runpy

    script = runpy.run_path(str(ROOT / "scripts" / "architecture.py"))
    assert script["main"](["--check"]) == 0, "run: make docs-map"


def test_the_map_sees_every_subpackage() -> None:
    import runpy

    script = runpy.run_path(str(ROOT / "scripts" / "architecture.py"))
    nodes = set(script["package_graph"]())
    subpackages = {f"streams.{p.name}" for p in (ROOT / "streams").iterdir()
                   if (p / "__init__.py").exists()}
    assert subpackages <= nodes
    assert {"online_models", "alerts", "streams (base)"} <= nodes
