"""The package's architecture, checked on the AST of every module under ``src/batchlab``.

* no import cycle between modules (only imports executed at import time count: module level and
  class bodies, not function bodies nor ``if TYPE_CHECKING:`` blocks);
* no import against the layering (imports at any depth count, lazy ones in functions included);
* the read side and the NQM engine never import JAX (nor optax, flax, kfac-jax), at any depth;
* no private name (``_x``) taken from another module, by import or as ``module._x``; a private
  module (``pkg._engine``) is fine inside its own package only;
* importing ``batchlab.analysis``, ``batchlab.report`` and ``batchlab.api`` does not load JAX (a fresh interpreter).

The layering is what both ``docs/style.md`` ("nqm <- optim, workloads <- train <- study <- analysis
<- plots, report <- cli"; the store never imports JAX; plots never run training) and the
consolidation issue (``cli -> report -> analysis -> study/calibrate -> workloads/plots -> train/nqm
-> optim``) allow: where the two orders differ, an import needs both.  Top-level modules
(``batchlab.errors``, ``batchlab.checks``, ``batchlab.critical``) are the lowest layer: everyone may
import them and they import no package.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
TOP = "top"  # the pseudo-package of modules directly under batchlab/ (and batchlab/__init__.py)

# package -> the other packages it may import (top-level modules are always allowed).
ALLOWED: dict[str, frozenset[str]] = {
    name: frozenset(imports) for name, imports in {
        TOP: (),
        "nqm": (),
        "optim": (),
        "train": ("optim",),
        "workloads": ("nqm",),
        "plots": ("nqm", "optim"),
        "store": (),
        "study": ("nqm", "optim", "workloads", "train", "store"),
        "calibrate": ("nqm", "optim", "workloads", "train", "plots"),
        "analysis": ("nqm", "optim", "workloads", "train", "store", "study", "calibrate"),
        "report": ("nqm", "optim", "workloads", "train", "store", "study", "calibrate", "analysis", "plots"),
        "api": ("nqm", "optim", "workloads", "train", "store", "study", "calibrate", "analysis", "plots",
                "report"),
        "cli": ("nqm", "optim", "workloads", "train", "store", "study", "calibrate", "analysis", "plots",
                "report", "api"),
    }.items()
}
JAX = frozenset({"jax", "jaxlib", "optax", "flax", "kfac_jax"})
JAX_FREE = frozenset({TOP, "nqm", "store", "analysis", "plots", "report"})


@dataclasses.dataclass(frozen=True)
class Import:
    """One imported module (or name of a module) as written in ``source``.

    Attributes:
        source: the importing module, e.g. ``"batchlab.study.spec"``.
        target: the imported module, resolved (relative imports, submodules named in ``from``).
        name: the name taken from ``target`` when it is not a submodule; ``None`` otherwise.
        line: line number of the statement.
        runtime: executed when ``source`` is imported (not in a function, not ``TYPE_CHECKING``).
        bound_as: the local name a ``from`` import binds (``None`` for ``import a.b``).
    """

    source: str
    target: str
    name: str | None
    line: int
    runtime: bool
    bound_as: str | None = None

    def where(self) -> str:
        what = self.target + (f".{self.name}" if self.name else "")
        return f"{self.source}:{self.line} imports {what}" + ("" if self.runtime else " (lazily)")


@dataclasses.dataclass(frozen=True)
class Codebase:
    """The modules of one source tree and their imports."""

    modules: dict[str, pathlib.Path]
    packages: frozenset[str]
    imports: tuple[Import, ...]
    trees: dict[str, ast.Module]


def _module_names(src: pathlib.Path) -> tuple[dict[str, pathlib.Path], frozenset[str]]:
    modules, packages = {}, set()
    for path in sorted((src / "batchlab").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
            packages.add(".".join(parts))
        modules[".".join(parts)] = path
    return modules, frozenset(packages)


def _resolve(node: ast.Import | ast.ImportFrom, source: str, is_package: bool,
             modules: dict[str, pathlib.Path]) -> list[tuple[str, str | None, str | None]]:
    """``(target module, name or None, local name bound by a from-import or None)`` per alias."""
    if isinstance(node, ast.Import):
        return [(alias.name, None, None) for alias in node.names]
    if node.level:
        base = source.split(".") if is_package else source.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    out = []
    for alias in node.names:
        submodule = f"{target}.{alias.name}"
        bound = alias.asname or alias.name
        out.append((submodule, None, bound) if submodule in modules else (target, alias.name, bound))
    return out


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def load_codebase(src: pathlib.Path) -> Codebase:
    """Parse every module under ``src/batchlab`` and collect its imports."""
    modules, packages = _module_names(src)
    imports, trees = [], {}
    for source, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        trees[source] = tree

        def walk(node: ast.AST, runtime: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target, name, bound in _resolve(child, source, source in packages, modules):
                        imports.append(Import(source, target, name, child.lineno, runtime, bound))
                lazy = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                walk(child, runtime and not lazy and not _is_type_checking(child))

        walk(tree, True)
    return Codebase(modules, packages, tuple(imports), trees)


@functools.cache
def codebase() -> Codebase:
    return load_codebase(SRC)


def package_of(module: str, packages: frozenset[str]) -> str:
    """``"optim"`` for ``batchlab.optim.base``; :data:`TOP` for ``batchlab`` and ``batchlab.errors``."""
    parts = module.split(".")
    if len(parts) >= 2 and ".".join(parts[:2]) in packages:
        return parts[1]
    return TOP


# --- the checks (each returns its violations, one line each) ----------------------------------------


def import_cycles(code: Codebase) -> list[str]:
    """Cycles of runtime imports between modules, one per strongly connected group."""
    graph: dict[str, set[str]] = {module: set() for module in code.modules}
    for imp in code.imports:
        if imp.runtime and imp.target in code.modules and imp.target != imp.source:
            graph[imp.source].add(imp.target)

    def path(start: str, goal: str) -> list[str] | None:
        previous, frontier = {start: start}, [start]
        while frontier:
            nxt = []
            for node in frontier:
                for succ in sorted(graph[node]):
                    if succ == goal:
                        out = [goal, node]
                        while out[-1] != start:
                            out.append(previous[out[-1]])
                        return out[::-1]
                    if succ not in previous:
                        previous[succ] = node
                        nxt.append(succ)
            frontier = nxt
        return None

    cycles, seen = [], set()
    for module in sorted(graph):
        if module in seen:
            continue
        cycle = path(module, module)
        if cycle:
            seen.update(cycle)
            cycles.append(" -> ".join(cycle))
    return cycles


def upward_imports(code: Codebase) -> list[str]:
    """Imports of a package that its layer may not import (at any depth)."""
    out = []
    for imp in code.imports:
        if not imp.target.startswith("batchlab"):
            continue
        source, target = package_of(imp.source, code.packages), package_of(imp.target, code.packages)
        if source != target and target != TOP and target not in ALLOWED.get(source, frozenset()):
            out.append(f"{imp.where()}: {source} may not import {target}")
    return out


def jax_imports(code: Codebase) -> list[str]:
    """JAX (optax, flax, kfac-jax) imported by a package that must stay JAX-free (at any depth)."""
    return [f"{imp.where()}: {package_of(imp.source, code.packages)} must not import JAX"
            for imp in code.imports
            if imp.target.split(".")[0] in JAX and package_of(imp.source, code.packages) in JAX_FREE]


def _private_part(module: str) -> str | None:
    """The package a private module (a component ``_x``) belongs to, or ``None`` if public."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(code: Codebase) -> list[str]:
    """Private names taken from another module, and private modules used outside their package."""
    out = []
    bound: dict[str, dict[str, str]] = {module: {} for module in code.modules}
    for imp in code.imports:
        if not imp.target.startswith("batchlab"):
            continue
        if imp.name is not None and _private(imp.name):
            out.append(f"{imp.where()}: private name")
        owner = _private_part(imp.target)
        if owner is not None and not (imp.source + ".").startswith(owner + "."):
            out.append(f"{imp.where()}: private module outside {owner}")
        if imp.name is None and imp.bound_as is not None:  # `from package import module`
            bound[imp.source][imp.bound_as] = imp.target
    for source, tree in code.trees.items():
        names = bound[source]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in names):
                out.append(f"{source}:{node.lineno} uses {names[node.value.id]}.{node.attr}: private name")
    return out


def _report(violations: list[str]) -> str:
    return f"{len(violations)} violation(s):\n" + "\n".join(violations)


# --- the checker on a small made-up package (so that the real checks cannot pass vacuously) -------


@pytest.fixture
def made_up(tmp_path: pathlib.Path) -> Codebase:
    files = {
        "batchlab/__init__.py": "",
        "batchlab/errors.py": "",
        "batchlab/nqm/__init__.py": "from batchlab.nqm.a import f\n",
        "batchlab/nqm/a.py": "from batchlab.nqm import b\nimport jax\n",
        "batchlab/nqm/b.py": "from . import _engine\nfrom .a import _helper\n",
        "batchlab/nqm/_engine.py": "def g():\n    from batchlab.nqm import a\n",
        "batchlab/optim/__init__.py": "",
        "batchlab/optim/base.py": textwrap.dedent("""\
            from typing import TYPE_CHECKING
            from batchlab.errors import InputError
            from batchlab.nqm import _engine, a
            if TYPE_CHECKING:
                from batchlab.optim import registry
            def lazy():
                from batchlab.train import loop
            a._hidden()
            """),
        "batchlab/optim/registry.py": "from batchlab.optim import base\n",
        "batchlab/train/__init__.py": "",
        "batchlab/train/loop.py": "from batchlab.optim.base import InputError\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return load_codebase(tmp_path)


def test_checker_finds_planted_violations(made_up: Codebase):
    assert import_cycles(made_up) == ["batchlab.nqm.a -> batchlab.nqm.b -> batchlab.nqm.a"]
    assert upward_imports(made_up) == [
        "batchlab.optim.base:3 imports batchlab.nqm._engine: optim may not import nqm",
        "batchlab.optim.base:3 imports batchlab.nqm.a: optim may not import nqm",
        "batchlab.optim.base:7 imports batchlab.train.loop (lazily): optim may not import train",
    ]
    assert jax_imports(made_up) == ["batchlab.nqm.a:2 imports jax: nqm must not import JAX"]
    assert private_uses(made_up) == [
        "batchlab.nqm.b:2 imports batchlab.nqm.a._helper: private name",
        "batchlab.optim.base:3 imports batchlab.nqm._engine: private module outside batchlab.nqm",
        "batchlab.optim.base:8 uses batchlab.nqm.a._hidden: private name",
    ]


def test_checker_sees_the_real_package():
    code = codebase()
    assert {"batchlab.optim.base", "batchlab.study.spec", "batchlab.checks"} <= set(code.modules)
    assert any(imp.source == "batchlab.study.spec" and imp.target == "batchlab.optim.hyperparameters"
               for imp in code.imports)
    assert set(package_of(m, code.packages) for m in code.modules) <= set(ALLOWED)


# --- the real package ------------------------------------------------------------------------------


def test_optimizer_base_knows_no_specific_optimizer():
    """``optim.base`` and the shared declarations import no other optimizer module, lazily neither."""
    shared = {"batchlab.optim.base", "batchlab.optim.hyperparameters"}
    wrong = [imp.where() for imp in codebase().imports
             if imp.source in shared and imp.target.startswith("batchlab.optim") and imp.target not in shared]
    assert not wrong, _report(wrong)


def test_no_import_cycles():
    assert not import_cycles(codebase()), _report(import_cycles(codebase()))


def test_no_upward_imports():
    assert not upward_imports(codebase()), _report(upward_imports(codebase()))


def test_jax_free_packages_never_import_jax():
    assert not jax_imports(codebase()), _report(jax_imports(codebase()))


def test_no_private_names_across_modules():
    assert not private_uses(codebase()), _report(private_uses(codebase()))


def test_read_side_does_not_import_jax():
    script = ("import sys, batchlab.analysis, batchlab.report, batchlab.api; "
              f"print(sorted(m for m in {sorted(JAX)!r} if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            env=env, timeout=300)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
