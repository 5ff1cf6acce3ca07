"""The layout rules of docs/architecture.md, checked on the source: no import cycles (module-level or inside
functions), layers that import one way, no heavy dependency in core, tests that mirror the package, and no
`if x == "name"` chains where a registry or a table belongs.

This file is the one test that mirrors no module: it checks the tree itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "tether"
FAMILIES = ["coherence", "lm", "flow"]
HEAVY = ("transformers", "trl", "ogbench", "gymnasium", "ray", "peft", "mujoco")
# Sub-packages of a family, lowest layer first; a module may import its own layer and the layers before it.
# A name is a sub-package or a top-level module of the family; "*" is every other top-level module.
LAYERS = {
    "lm": [["model"], ["rollout"], ["grpo"], ["dcmdp", "intrinsic"], ["pretrain"], ["builtins"], ["cli"]],
    "flow": [["*"], ["ogbench", "toy"], ["cli"]],
    "coherence": [["*"], ["neural"], ["cli"]],
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(path: Path, modules: dict[str, Path] = MODULES) -> set[str]:
    """Every tether module `path` imports, anywhere in the file (lazy imports inside functions included).

    `from a.b import c` counts as importing `a.b.c` when that is a module, else `a.b`."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            out |= subs if len(subs) == len(node.names) else subs | {node.module}
    return {m for m in out if m.split(".")[0] == "tether"}


GRAPH = {m: imports(p) for m, p in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_among_tether_modules():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_catches_module_level_and_lazy_cycles(tmp_path):
    pkg = tmp_path / "tether"
    pkg.mkdir()
    (pkg / "a.py").write_text("from tether.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from tether import a\n")
    mods = {"tether.a": pkg / "a.py", "tether.b": pkg / "b.py"}
    graph = {m: imports(p, mods) for m, p in mods.items()}
    assert graph == {"tether.a": {"tether.b"}, "tether.b": {"tether.a"}}
    assert find_cycle(graph) == ["tether.a", "tether.b", "tether.a"]
    assert find_cycle({"tether.a": {"tether.b"}, "tether.b": set()}) is None


def _key(family: str, module: str) -> str:
    name = module.split(".")[2]
    return name if any(name in names for names in LAYERS[family]) else "*"


def _layer(family: str, module: str) -> int | None:
    key = _key(family, module)
    return next((i for i, names in enumerate(LAYERS[family]) if key in names), None)


@pytest.mark.parametrize("family", FAMILIES)
def test_layers_import_one_way(family):
    prefix = f"tether.{family}"
    for m, deps in GRAPH.items():
        if not m.startswith(prefix + ".") or m.count(".") < 2:
            continue
        mine = _layer(family, m)
        assert mine is not None, f"{m}: not in any layer of {family} (tests/test_architecture.py LAYERS)"
        for d in deps:
            if d.startswith(prefix + ".") and d.count(".") >= 2:
                theirs = _layer(family, d)
                same = _key(family, d) == _key(family, m)
                assert theirs is not None and (theirs < mine or same), \
                    f"{m} (layer {mine}) imports {d} (layer {theirs}): layers import one way, {LAYERS[family]}"


def test_light_modules_of_the_lm_do_not_load_grpo_or_the_papers():
    for m in [m for m in GRAPH if m.startswith(("tether.lm.model.", "tether.lm.rollout."))]:
        seen, todo = set(), [m]
        while todo:
            for d in GRAPH.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        heavy = [d for d in seen if d.startswith(("tether.lm.grpo", "tether.lm.dcmdp", "tether.lm.intrinsic"))]
        assert not heavy, f"importing {m} loads {heavy}"


def test_core_imports_no_family_and_no_heavy_optional_dependency():
    for m, p in MODULES.items():
        if not m.startswith("tether.core"):
            continue
        names = _all_imports(p)
        bad = [n for n in names if n.split(".")[:2] in (["tether", f] for f in FAMILIES)]
        assert not bad, f"{m} imports {bad}"
        assert not [n for n in names if n.split(".")[0] in HEAVY], f"{m} imports an optional heavy dependency"


def _all_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("family", FAMILIES)
def test_families_never_import_each_other(family):
    others = [f"tether.{f}" for f in FAMILIES if f != family]
    for m, deps in GRAPH.items():
        if m.startswith(f"tether.{family}"):
            bad = [d for d in deps if d.startswith(tuple(others))]
            assert not bad, f"{m} imports {bad}"


def test_integrations_are_leaves():
    """tether.integrations may import core and the families; core and the families never import it."""
    for m, deps in GRAPH.items():
        if m.startswith(("tether.core", *(f"tether.{f}" for f in FAMILIES))):
            assert not [d for d in deps if d.startswith("tether.integrations")], m


# ----------------------------------------------------------------------------------- tests mirror the tree


def mirrored_module(test: Path) -> Path | None:
    """tests/a/b/test_c.py mirrors tether/a/b/c.py or the package tether/a/b/c/."""
    rel = test.relative_to(REPO / "tests")
    base = ROOT.joinpath(*rel.parts[:-1], rel.stem.removeprefix("test_"))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def test_every_test_file_mirrors_a_module():
    own = Path(__file__).resolve()
    orphans = [str(t.relative_to(REPO)) for t in (REPO / "tests").rglob("test_*.py")
               if t.resolve() != own and mirrored_module(t) is None]
    assert not orphans, f"test files that mirror no module under tether/: {orphans}"


def test_mirror_check_catches_an_orphan():
    assert mirrored_module(REPO / "tests" / "lm" / "grpo" / "test_trainer.py") == ROOT / "lm" / "grpo" / "trainer.py"
    assert mirrored_module(REPO / "tests" / "lm" / "test_dcmdp.py") == ROOT / "lm" / "dcmdp" / "__init__.py"
    assert mirrored_module(REPO / "tests" / "lm" / "test_grpo_config.py") is None


# --------------------------------------------------------------------------------------- name dispatch


def name_chains(source: str) -> list[int]:
    """Lines where an if/elif chain compares one attribute (`cfg.method`) with two or more strings, or where any
    `if <x>.name == ...` dispatches on a registry name (STYLE 4.6: a registry or a table belongs there)."""
    hits = []

    def key(test: ast.expr) -> str | None:
        if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
                and isinstance(test.left, ast.Attribute)
                and isinstance(test.comparators[0], ast.Constant) and isinstance(test.comparators[0].value, str)):
            return ast.dump(test.left)
        return None

    tree = ast.parse(source)
    elifs = {id(n.orelse[0]) for n in ast.walk(tree) if isinstance(n, ast.If) and len(n.orelse) == 1
             and isinstance(n.orelse[0], ast.If)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.If) or id(node) in elifs:
            continue
        k = key(node.test)
        if k and isinstance(node.test.left, ast.Attribute) and node.test.left.attr == "name":
            hits.append(node.lineno)
            continue
        n, same = node, 0
        while k and n is not None and key(n.test) == k:
            same += 1
            n = n.orelse[0] if len(n.orelse) == 1 and isinstance(n.orelse[0], ast.If) else None
        if same >= 2:
            hits.append(node.lineno)
    return hits


def test_no_name_dispatch_chains():
    bad = [f"{p.relative_to(REPO)}:{line}" for p in ROOT.rglob("*.py") for line in name_chains(p.read_text())]
    assert not bad, f"if/elif chains on a name (use a registry or a dict): {bad}"


def test_name_chain_guard_catches_both_forms():
    chain = 'if cfg.method == "bc":\n    a()\nelif cfg.method == "fql":\n    b()\nelse:\n    c()\n'
    assert name_chains(chain) == [1]
    assert name_chains('if spec.name == "x":\n    pass\n') == [1]
    assert name_chains('if self.reference == "frozen":\n    a()\n') == []     # a two-way switch is fine
    assert name_chains('if a.x == "x":\n    p()\nelif a.y == "y":\n    q()\n') == []
    assert name_chains('if cmd == "reset":\n    p()\nelif cmd == "step":\n    q()\n') == []   # a message protocol
