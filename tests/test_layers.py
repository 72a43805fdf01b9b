"""The project's shape, read from its imports: layers that only point down, no circles."""
import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("streaming", "model", "native")
ROOT_SCRIPTS = {p.stem for p in REPO.glob("*.py")}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    named = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            named.add(node.module)
            named.update(f"{node.module}.{a.name}" for a in node.names)  # `from package import module`
    return named


def project_imports() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imports(path) if m in mods or m in ROOT_SCRIPTS} for name, path in mods.items()}


def test_the_live_path_knows_nothing_of_networks_and_nothing_imports_a_root_script():
    graph = project_imports()
    assert len(graph) > 40  # the walk found the project
    for name, deps in graph.items():
        assert not deps & ROOT_SCRIPTS, f"{name} imports a root script: {deps & ROOT_SCRIPTS}"
        if name.startswith("streaming"):
            assert not {d for d in deps if d.split(".")[0] == "model"}, f"{name} imports model/: {deps}"


def test_the_ground_floor_imports_nothing_of_the_project():
    graph = project_imports()
    for name in ("streaming.errors", "streaming.datatypes"):
        assert graph[name] == set(), graph[name]


def test_sources_and_outputs_are_packages():
    for package in ("streaming/sources", "streaming/outputs"):
        assert (REPO / package / "__init__.py").is_file()
        assert len(list((REPO / package).glob("*.py"))) > 3


def test_no_import_circle():
    graph = project_imports()
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph.get(name, ())):
            assert state.get(dep) != "open", "import circle: " + " -> ".join(path[path.index(dep):] + [dep])
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
