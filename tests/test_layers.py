"""The layering rule, read from the source: imports point one way.

`mer_jax` never imports `data_builders` (nor `configs`): the builders use the library's
bottom layers, and a run gets its data from `data_builders.load` through `launch.py`. No
two packages import each other, directly or around a longer loop. Units: each
sub-package and each top-level module of mer_jax (`mer_jax.data`, `mer_jax.models`,
`mer_jax.errors`, `mer_jax.hosts`, `mer_jax.predict`, ...), and `data_builders` as one.
"""

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mer_jax", "data_builders")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[str, ast.stmt]]:
    """(module name, statement) for every module an import of the file names, absolute:
    `from mer_jax import errors` names mer_jax.errors, `from a.b import c` a.b.c."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's own package
                package = module.split(".")
                package = package if is_package else package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            yield from ((f"{base}.{alias.name}", node) for alias in node.names)


def _unit(module: str) -> str | None:
    """The layering unit of a module of ours; None for a module of another project."""
    parts = module.split(".")
    if parts[0] == "data_builders":
        return "data_builders"
    if parts[0] != "mer_jax":
        return None
    # A bottom module (errors, guards, hosts) and a top one (predict, doctor) both sit
    # at the package's top level: each is a unit, like a sub-package.
    return ".".join(parts[:2])


def _import_arrows() -> dict[tuple[str, str], list[str]]:
    """(unit A, unit B) -> the files of A that import B, for every A != B."""
    arrows: dict[tuple[str, str], list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            source = _unit(module)
            tree = ast.parse(path.read_text(), filename=str(path))
            imported = _imported(tree, module, path.name == "__init__.py")
            targets = {_unit(name) for name, _ in imported}
            for target in sorted(t for t in targets if t not in (None, source)):
                arrows[source, target].append(str(path.relative_to(ROOT)))
    return arrows


def _strongly_connected(nodes: set[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of a directed graph (Tarjan)."""
    successors = defaultdict(list)
    for start, end in sorted(edges):
        successors[start].append(end)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in successors[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return components


def test_mer_jax_imports_neither_data_builders_nor_configs():
    wrong = []
    for path in sorted((ROOT / "mer_jax").rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        for name, node in _imported(tree, module, path.name == "__init__.py"):
            if name.split(".")[0] in ("data_builders", "configs"):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                wrong.append(f"{where}: {ast.unparse(node)}")
    assert not wrong, "mer_jax must not import data_builders or configs:\n  " + "\n  ".join(
        sorted(set(wrong))
    )


def test_no_import_cycle_between_packages():
    arrows = _import_arrows()
    nodes = {unit for arrow in arrows for unit in arrow}
    cycles = [c for c in _strongly_connected(nodes, set(arrows)) if len(c) > 1]
    lines = []
    for cycle in cycles:
        lines.append(" <-> ".join(cycle) + ":")
        lines += [
            f"    {start} -> {end} ({', '.join(files)})"
            for (start, end), files in sorted(arrows.items())
            if start in cycle and end in cycle
        ]
    assert not cycles, "import cycles between packages:\n  " + "\n  ".join(lines)
