"""The py_nodes modules' structure: no import cycle, no reaching into private members,
one sentence to open each module, ``__all__`` in each, parts of a readable size."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "py_nodes"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE
MODULES = {f"{PACKAGE}.{p.stem}": p for p in sorted(ROOT.glob("*.py")) if p.stem != "__init__"}
MODULES[PACKAGE] = ROOT / "__init__.py"


def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"), str(MODULES[module]))


def _is_module(package: str, name: str) -> bool:
    """Whether ``from package import name`` imports a module (Python or compiled)."""
    return package == PACKAGE and any(ROOT.glob(f"{name}.*"))


def _imported(module: str) -> set[str]:
    """The py_nodes modules ``module`` imports anywhere: at the top, in functions, and
    under ``if TYPE_CHECKING``."""
    found: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: relative import"
            base = node.module or ""
            # ``from py_nodes import _epmd`` imports a module; ``from py_nodes import
            # Node`` imports the package.
            names = [
                f"{base}.{alias.name}" if _is_module(base, alias.name) else base
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)) is not None:
            return found
    return None


def test_the_module_imports_have_no_cycle_not_even_one_under_type_checking() -> None:
    graph = {module: _imported(module) for module in MODULES}
    assert graph[f"{PACKAGE}._node"], "the import parser found nothing"
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or ())


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def _declared(cls: ast.ClassDef) -> set[str]:
    """The attributes a class declares: its slots, annotations, methods, ``self.x``."""
    names: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "self" and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
    return names


def _private_accesses(module: str) -> Iterator[str]:
    """``receiver._name`` where the receiver is not ``self``, ``cls``, ``super()`` or a
    name this module defines at its top level. Privacy is per class, as in Python: a
    class's own methods may read what the class declares on ``other``, another of its
    instances (``other._items`` in ``__eq__``)."""
    tree = _tree(module)
    own = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    } | {
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    }
    allowed_in: dict[int, set[str]] = {}  # id of an Attribute node -> names its class declares
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef):
            declared = _declared(cls)
            for node in ast.walk(cls):
                allowed_in.setdefault(id(node), set()).update(declared)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__"):
            continue
        receiver = node.value
        if (
            isinstance(receiver, ast.Name)
            and receiver.id == "other"
            and name in allowed_in.get(id(node), ())
        ):
            continue
        if isinstance(receiver, ast.Name) and receiver.id in {"self", "cls", *own}:
            continue
        if (
            isinstance(receiver, ast.Call)
            and isinstance(receiver.func, ast.Name)
            and receiver.func.id == "super"
        ):
            continue
        yield f"{MODULES[module].name}:{node.lineno}: {ast.unparse(node)}"


def test_no_module_reaches_into_another_objects_private_members() -> None:
    found = [line for module in MODULES for line in _private_accesses(module)]
    assert found == [], "\n".join(found)


def test_each_module_opens_with_a_sentence_and_declares_all() -> None:
    for module in MODULES:
        tree = _tree(module)
        doc = ast.get_docstring(tree)
        assert doc, f"{module} has no docstring"
        first = doc.split("\n\n")[0]
        assert first.rstrip().endswith((".", ":")), f"{module}: {first!r}"
        assert any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for node in tree.body
        ), f"{module} has no __all__"


def test_each_part_is_between_100_and_650_lines() -> None:
    # The private modules are the parts; the package and the runnable echo node are
    # entry points, held only to the upper bound.
    for module, path in MODULES.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 650, f"{module}: {lines} lines"
        if path.stem.startswith("_"):
            assert lines >= 100, f"{module}: {lines} lines"
