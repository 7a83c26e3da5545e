"""The package layout: no import cycle among rlcode's modules, shared modules import no tier, and
every module imports on its own (in a fresh interpreter, with nothing of rlcode imported before it)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "rlcode"
TIERS = ("rlcode.tabular", "rlcode.policy_gradient", "rlcode.rlhf")
# Modules every tier may use, so they import no tier, not even inside a function. The command line
# (rlcode.cli) sits above the tiers and imports them on use.
SHARED_PACKAGES = ("rlcode.run", "rlcode.sweeps")
NOT_SHARED = ("rlcode.__main__",)  # __main__ runs the command line: not imported here


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, tree: ast.AST, module_level: bool) -> set[str]:
    """rlcode modules ``module`` imports (at module level only, or anywhere), each with its packages."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue  # runs on use, after every module it needs has finished importing
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                source = _resolve(module, child)
                for alias in child.names:
                    submodule = f"{source}.{alias.name}"
                    names.add(submodule if submodule in MODULES else source)
            visit(child)

    visit(tree)
    found = set()
    for name in names:
        if not (name == "rlcode" or name.startswith("rlcode.")):
            continue
        parts = name.split(".")
        for end in range(2, len(parts) + 1):  # importing a.b.c runs a.b's __init__ first
            target = ".".join(parts[:end])
            if target in MODULES and not (module + ".").startswith(target + "."):
                found.add(target)
    found.discard(module)
    return found


def _graph(module_level: bool) -> dict[str, set[str]]:
    return {name: _imports(name, ast.parse(path.read_text()), module_level) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                walk(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return cycles


def test_no_import_cycle_at_module_level():
    assert _cycles(_graph(module_level=True)) == []


def test_no_import_cycle_through_imports_inside_functions():
    """A lazy import hides a cycle from the interpreter, not from a reader (configs -> zoo -> configs was one)."""
    assert _cycles(_graph(module_level=False)) == []


def _is_shared(name: str) -> bool:
    top_level = name.count(".") == 1 and not _is_package(name)
    in_shared_package = any(name == p or name.startswith(p + ".") for p in SHARED_PACKAGES)
    return (top_level or in_shared_package) and name not in NOT_SHARED


def test_shared_modules_import_no_tier():
    graph = _graph(module_level=False)
    shared = [name for name in MODULES if _is_shared(name)]
    assert {"rlcode.configs", "rlcode.algorithms", "rlcode.run.plots", "rlcode.sweeps.sweeps"} <= set(shared)
    offenders = {
        name: sorted(t for t in graph[name] if any(t == tier or t.startswith(tier + ".") for tier in TIERS))
        for name in shared
    }
    assert {name: tiers for name, tiers in offenders.items() if tiers} == {}


ISOLATED_IMPORTS = textwrap.dedent("""
    import importlib, os, sys
    # Third-party packages first, once: each child then pays only for rlcode's own modules.
    for heavy in ("numpy", "torch", "gymnasium", "yaml", "safetensors", "transformers"):
        try:
            importlib.import_module(heavy)
        except ImportError:
            pass
    assert not [m for m in sys.modules if m.startswith("rlcode")]
    failed = []
    for name in sys.argv[1:]:
        pid = os.fork()
        if pid == 0:  # a child with no rlcode module imported yet
            try:
                importlib.import_module(name)
            except ImportError as error:  # an optional extra this install lacks is fine, a cycle is not
                code = 0 if type(error).__name__ == "MissingExtra" else 1
                print(f"{name}: {type(error).__name__}: {error}", flush=True)
                os._exit(code)
            except BaseException as error:
                print(f"{name}: {type(error).__name__}: {error}", flush=True)
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status:
            failed.append(name)
    print("FAILED", failed)
    sys.exit(1 if failed else 0)
""")


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_every_module_imports_on_its_own():
    done = subprocess.run([sys.executable, "-c", ISOLATED_IMPORTS, *sorted(set(MODULES) - {"rlcode.__main__"})], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
