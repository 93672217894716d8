"""The floors of the code base: which package may import which, no cycles, imports at the top of each file.

Read from the source with `ast`, so the check sees every import, including ones a test run never executes.
"""

import ast
import pathlib

import pytest
from conftest import REPO

# Package -> the packages of ours it may import. rlo is installed on its own, so it depends on nothing of ours.
ALLOWED = {
    "rlo": set(),
    "dnnlib": set(),
    "torch_utils": {"dnnlib"},
    "training": {"rlo", "dnnlib", "torch_utils"},
    "metrics": {"training", "rlo", "dnnlib", "torch_utils"},
    "commands": {"metrics", "training", "rlo", "dnnlib", "torch_utils"},
    "experiments": {"rlo", "dnnlib", "torch_utils"},
    "study": {"commands", "metrics", "training", "rlo", "dnnlib", "torch_utils"},
}
OURS = set(ALLOWED)


def package_files(package):
    return sorted((REPO / package).rglob("*.py"))


def imports_of(path: pathlib.Path):
    """(imported top-level package of ours, line, at module level?) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    for parent in ast.walk(tree):  # imports guarded by `if TYPE_CHECKING:` or try/except at module level count as top
        if isinstance(parent, (ast.If, ast.Try)) and id(parent) in top_level:
            top_level.update(id(child) for child in ast.walk(parent))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            if root in OURS:
                yield root, node.lineno, id(node) in top_level


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_the_floors_below_them(package):
    offending = [
        f"{path.relative_to(REPO)}:{line} imports {root}"
        for path in package_files(package)
        for root, line, _ in imports_of(path)
        if root != package and root not in ALLOWED[package]
    ]
    assert not offending, f"{package} may import only {sorted(ALLOWED[package]) or 'nothing of ours'}: {offending}"


def test_the_allowed_graph_has_no_cycles():
    state = {}

    def visit(package, trail):
        if state.get(package) == "done":
            return
        assert state.get(package) != "open", f"cycle: {' -> '.join(trail + [package])}"
        state[package] = "open"
        for dep in ALLOWED[package]:
            visit(dep, trail + [package])
        state[package] = "done"

    for package in ALLOWED:
        visit(package, [])


def test_imports_of_our_packages_sit_at_the_top_of_each_file():
    files = [path for package in ALLOWED for path in package_files(package)] + sorted(REPO.glob("*.py"))
    local = [f"{path.relative_to(REPO)}:{line}" for path in files for _, line, at_top in imports_of(path) if not at_top]
    assert not local, f"function-local imports of project modules hide dependencies from a reader: {local}"


ROOT_SCRIPTS = sorted(path.stem for path in REPO.glob("*.py"))


def test_root_scripts_do_not_import_each_other():
    edges = set()
    for script in ROOT_SCRIPTS:
        tree = ast.parse((REPO / f"{script}.py").read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            edges |= {(script, name.split(".")[0]) for name in names if name.split(".")[0] in ROOT_SCRIPTS}
    assert not edges, f"root scripts importing root scripts: {sorted(edges)}"
    assert "generate" in ROOT_SCRIPTS and "compare" in ROOT_SCRIPTS  # the glob found the scripts


def test_tests_and_benchmarks_import_modules_not_root_scripts():
    """A root script is a few lines that run a command from a module: the tests and benchmarks use the module."""
    offenders = []
    files = sorted((REPO / "tests").glob("*.py")) + sorted((REPO / "benchmarks").glob("*.py"))
    for path in [f for f in files if f.name != "official_train_cpu.py"]:  # it imports the official train.py
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name} imports {n}" for n in names if n.split(".")[0] in ROOT_SCRIPTS]
        offenders += [
            f"{path.name} loads a root script by path"
            for root in ROOT_SCRIPTS
            if f'"{root}.py"' in path.read_text() and "spec_from_file_location" in path.read_text()
        ]
    assert not offenders, offenders
    for script in ROOT_SCRIPTS:
        assert len((REPO / f"{script}.py").read_text().splitlines()) <= 12, f"{script}.py is not a thin script"
