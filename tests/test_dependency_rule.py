"""The dependency rule (docs/architecture.md): core imports no family; families never import each other."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tether"
FAMILIES = ["coherence", "lm", "flow"]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _package_imports(pkg: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT)): _imports(p) for p in (ROOT / pkg).rglob("*.py")}


def test_core_imports_no_family_and_no_heavy_optional_dependency():
    for file, names in _package_imports("core").items():
        bad = [n for n in names if n.split(".")[0] == "tether" and n.split(".")[1:2] and n.split(".")[1] in FAMILIES]
        heavy = [n for n in names if n.split(".")[0] in ("transformers", "trl", "ogbench", "gymnasium", "ray")]
        assert not bad, f"tether/{file} imports {bad}"
        assert not heavy, f"tether/{file} imports optional heavy dependencies {heavy}"


@pytest.mark.parametrize("family", FAMILIES)
def test_families_never_import_each_other(family):
    if not (ROOT / family).exists():
        pytest.skip(f"tether.{family} has not landed")
    others = [f for f in FAMILIES if f != family]
    for file, names in _package_imports(family).items():
        bad = [n for n in names if n.startswith("tether.") and n.split(".")[1] in others]
        assert not bad, f"tether/{file} imports {bad}"


def test_rule_checker_catches_a_violation(tmp_path):
    (tmp_path / "m.py").write_text("from tether.lm.model import X\nimport tether.flow\n")
    assert _imports(tmp_path / "m.py") == {"tether.lm.model", "tether.flow"}


def test_no_name_dispatch_on_registries():
    """STYLE 4.6: registries are dispatched through .get(), never `if name == ...` in the caller."""
    import re

    pat = re.compile(r"if\s+[\w.]*\.name\s*==")
    for pkg in FAMILIES:
        for p in (ROOT / pkg).rglob("*.py") if (ROOT / pkg).exists() else []:
            assert not pat.search(p.read_text()), f"{p} dispatches on a registry name with if ... =="


def test_integrations_are_leaves():
    """tether.integrations may import core and the families; core and the families never import it."""
    for pkg in ["core", *FAMILIES]:
        if not (ROOT / pkg).exists():
            continue
        for file, names in _package_imports(pkg).items():
            bad = [n for n in names if n.startswith("tether.integrations")]
            assert not bad, f"tether/{file} imports {bad}"
