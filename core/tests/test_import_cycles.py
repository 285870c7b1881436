"""The project's modules import one another in one direction: no module imports, even
inside a function, a module that imports it back."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "core", "events", "users")
# Django's `createsuperuser` calls the user manager, which creates through the service so
# that the sign-up event and the cache are kept; the service imports the model. The one
# edge back is the manager's (users/models.py says why).
ALLOWED = {("users.models", "users.services")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "tests" not in path.parts and "migrations" not in path.parts
    }


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    pending = [tree]
    while pending:
        node = pending.pop()
        if _type_checking_only(node):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))
    return {name for name in found if name in modules}


def _graph() -> dict[str, set[str]]:
    modules = _project_modules()
    return {
        name: _imports(ast.parse(path.read_text()), modules)
        - {name}
        - {target for source, target in ALLOWED if source == name}
        for name, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        if name in done:
            return None
        visiting.append(name)
        for target in sorted(graph.get(name, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name)
        if cycle:
            return cycle
    return None


def test_the_graph_sees_imports_inside_functions() -> None:
    # The manager's deferred import, the one allowed edge: the check must see it.
    modules = _project_modules()
    tree = ast.parse((ROOT / "users" / "models.py").read_text())
    assert "users.services" in _imports(tree, modules)


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert _cycle(_graph()) is None
