"""The import map of the loss library and its experiments, read from the source (nothing is imported): rlo imports
torch, the standard library and itself, nothing else; imports of our modules sit at the top of the file; and the
modules import one another without cycles (logreg_grid <- logreg_report <- logreg, the CLI)."""

import ast
import pathlib
import sys

from conftest import REPO

PACKAGES = ("rlo", "experiments")
# Third-party imports kept inside the one function that needs them, for a measured import-time reason (see the
# comment at each): scikit-learn's datasets (1.1-1.7 s), torchvision's models (2.7-4.0 s) and transforms.v2
# (2.8-3.5 s), timm (1.3-1.9 s; an extra, so also absent where only the loss library is installed) and
# safetensors.torch (a timm dependency, so part of the same extra).
LAZY_THIRD_PARTY = {"sklearn.datasets", "torchvision.models", "torchvision.transforms.v2", "timm", "safetensors.torch"}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}


def _imports(tree: ast.AST):
    """(imported module names, top-level?) for every import statement; `from a import b` names a.b when that is a
    module of ours, else a."""
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield [alias.name for alias in node.names], id(node) in top
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import at line {node.lineno}"
            yield (
                [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                    for a in node.names
                ],
                id(node) in top,
            )


def test_rlo_imports_torch_the_standard_library_and_itself_only():
    allowed = {"rlo", "torch", "__future__"} | set(sys.stdlib_module_names)
    offenders = [
        (name, imported)
        for name, path in MODULES.items()
        if name.split(".")[0] == "rlo"
        for imported_names, _ in _imports(ast.parse(path.read_text()))
        for imported in imported_names
        if imported.split(".")[0] not in allowed
    ]
    assert not offenders
    assert "rlo.functional" in MODULES and "experiments.logreg" in MODULES  # the globs found both packages


def test_imports_sit_at_the_top_of_the_file_but_for_measured_third_party_ones():
    local = [
        (name, imported)
        for name, path in MODULES.items()
        for imported_names, at_top in _imports(ast.parse(path.read_text()))
        if not at_top
        for imported in imported_names
        if imported not in LAZY_THIRD_PARTY
    ]
    assert not local


def test_rlo_modules_import_each_other_without_a_cycle():
    edges = {
        name: {
            imported
            for names, _ in _imports(ast.parse(path.read_text()))
            for imported in names
            if imported in MODULES and imported != name
        }
        for name, path in MODULES.items()
    }
    assert "experiments.logreg_grid" in edges["experiments.logreg_report"]
    assert "experiments.logreg_report" in edges["experiments.logreg"]
    state = {}

    def visit(name, trail):
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", f"import cycle: {' -> '.join(trail + [name])}"
        state[name] = "open"
        for imported in sorted(edges[name]):
            visit(imported, trail + [name])
        state[name] = "done"

    for name in MODULES:
        visit(name, [])
