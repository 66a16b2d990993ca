"""The layout is the import tree, and the layers point one way.

Layers (``../shared/DESIGN.md``): core → data + builder → predictor | scheduler (siblings) →
eval → feedback → application (``greensched.cli``, ``greensched.service``).  A module may import
its own layer's modules and any lower layer's, never a higher one; the predictor and the
scheduler never import each other.  Every import is checked, including those inside functions.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The folders whose ``greensched/`` sub-folder is a portion of the ``greensched`` namespace.
PORTIONS = (".", "predictor", "scheduler", "feedback", "eval")

CORE = {"errors", "scenario", "scenario_tables", "plotstyle", "jobs", "state", "util", "units",
        "weights", "synth", "defaults", "version", "queueing", "outcomes", "default_scenario",
        "extras", "scenario_check"}
RANK = {"core": 0, "data": 1, "predictor": 2, "scheduler": 2, "eval": 3, "feedback": 4, "app": 5}
#: Heavy or solver libraries each layer must not import.
FORBIDDEN_LIBS = {
    "scheduler": ("torch", "transformers", "peft", "xgboost"),
    "predictor": ("linopy", "highspy", "gurobipy"),
    "core": ("torch", "transformers", "peft", "xgboost", "linopy", "highspy", "gurobipy"),
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "greensched", module
    head = parts[1] if len(parts) > 1 else ""
    if head in ("cli", "service"):
        return "app"
    if head in ("data", "builder"):
        return "data"
    if head in ("predictor", "scheduler", "eval", "feedback"):
        return head
    if head in CORE:
        return "core"
    raise AssertionError(f"module {module!r} belongs to no layer: add it to tests/test_layout.py")


def source_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for portion in PORTIONS:
        base = ROOT / portion
        for path in sorted((base / "greensched").rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "greensched":
                out += [(node.lineno, f"greensched.{a.name}") for a in node.names]
    return out


def test_every_folder_is_its_import_path() -> None:
    modules = source_modules()
    assert "greensched.scheduler.planner" in modules
    assert "greensched.predictor.base" in modules
    for portion in PORTIONS:
        # greensched is a namespace package: no portion may own it.
        assert not (ROOT / portion / "greensched" / "__init__.py").exists(), portion
    # No generic top-level import names: each portion holds only the greensched folder.
    for portion in PORTIONS[1:]:
        names = {p.name for p in (ROOT / portion).iterdir() if not p.name.startswith(".")}
        assert names <= {"greensched", "__pycache__"}, (portion, names)


def test_pyproject_lists_every_package() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(cfg["tool"]["setuptools"]["packages"])
    package_dirs = cfg["tool"]["setuptools"].get("package-dir", {})
    found = set()
    for portion in PORTIONS:
        base = ROOT / portion
        for init in (base / "greensched").rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(base).parts))
    missing = sorted(found - listed)
    assert not missing, f"packages missing from pyproject [tool.setuptools] packages: {missing}"
    for pkg in listed:
        top = ".".join(pkg.split(".")[:2])
        if top in package_dirs:
            assert (ROOT / package_dirs[top]).is_dir(), (pkg, package_dirs[top])


def test_layers_point_one_way() -> None:
    bad: list[str] = []
    for module, path in source_modules().items():
        src = layer_of(module)
        for line, target in imports_of(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            top = target.split(".")[0]
            if top in FORBIDDEN_LIBS.get(src, ()):
                bad.append(f"{where}: {src} layer imports {target}")
            if top != "greensched" or target == "greensched":
                continue
            dst = layer_of(target)
            if dst == src:
                continue
            if {src, dst} == {"predictor", "scheduler"}:
                bad.append(f"{where}: {module} ({src}) imports its sibling {target}")
            elif RANK[dst] > RANK[src]:
                bad.append(f"{where}: {module} ({src}) imports {target} ({dst}), a higher layer")
    assert not bad, "layer rule broken:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", ["greensched.cli", "greensched.service"])
def test_nothing_below_the_application_imports_it(module: str) -> None:
    users = []
    for name, path in source_modules().items():
        if layer_of(name) == "app":
            continue
        users += [f"{path.relative_to(ROOT)}:{ln}" for ln, t in imports_of(path)
                  if t == module or t.startswith(module + ".")]
    assert not users, f"library modules import {module}: {users}"


def test_no_module_is_a_god_file() -> None:
    # ~600 lines at most per module (issue 10); a few lines of slack for docstrings.
    big = {str(p.relative_to(ROOT)): n for p in source_modules().values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 650}
    assert not big, f"modules over 650 lines: {big}"
