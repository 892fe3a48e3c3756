"""Imports point down only, in the order docs/design.md draws (issue 20), and no two modules
import each other.

Every import of the package is read from the source (function-level ones too: a cycle hidden
inside a function is still a cycle) and each must go to a layer at or below the importing one;
within a layer, no module imports one that imports it back, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aios_notebook"

#: bottom to top, as docs/design.md draws them; a module's layer is its top-level name's
LAYERS: list[set[str]] = [
    {"exceptions", "clock", "storelike", "arrow_pool"},
    {"protocol", "testing"},
    {"recording"},  # the JSONL format: reader and writer
    {"store"},
    {"server"},
    {"rest"},
    {"client"},
    {"history"},
    {"reports"},
    {"rules"},
    {"views"},
    {"commands", "cli", "demo", "__main__"},
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "aios_notebook":
        return None
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path, *, running: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of the package in one file; with ``running``
    only those that run (not the checker's, under ``if TYPE_CHECKING:``)."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(relative.parts[:-1])  # what a relative import starts from (for __init__ too)
    tree = ast.parse(path.read_text(), str(path))
    checker_only = {id(node) for block in ast.walk(tree)
                    if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                    for statement in block.body for node in ast.walk(statement)} if running else set()
    found = []
    for node in ast.walk(tree):
        if id(node) in checker_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
                if not node.module:  # from . import x: each name may be a module
                    found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
                    continue
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def test_imports_point_down_only() -> None:
    upward = []
    unknown = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.as_posix() == "__init__.py":
            continue  # the package's face imports every layer lazily, on attribute access
        importer = relative.parts[0].removesuffix(".py")
        if importer not in LAYER_OF:
            unknown.add(importer)
            continue
        for line, module in _imports(path):
            top = _top(module)
            if top is None or top == "":
                continue
            if top not in LAYER_OF:
                unknown.add(top)
                continue
            if LAYER_OF[top] > LAYER_OF[importer]:
                upward.append(f"{relative}:{line} ({importer}) imports {module} ({top})")
    assert not unknown, f"modules in no layer (add them to LAYERS and docs/design.md): {sorted(unknown)}"
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


def test_the_layers_are_the_ones_design_md_draws() -> None:
    design = (PACKAGE.parent / "docs" / "design.md").read_text()
    drawing = design[design.index("```") + 3 : design.index("```", design.index("```") + 3)]
    order = [line.split()[0].rstrip("/,") for line in drawing.strip().splitlines() if line.strip()]
    # the drawing lists one representative per layer, top first
    firsts = [next(iter(sorted(names))) for names in LAYERS]
    tops = [name for name in order if name.removesuffix(".py") in LAYER_OF]
    layers_drawn = [LAYER_OF[name.removesuffix(".py")] for name in tops]
    assert layers_drawn == sorted(layers_drawn, reverse=True), (tops, firsts)
    assert set(layers_drawn) == set(range(len(LAYERS))), f"layers missing from the drawing: {tops}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_one_that_imports_it_back() -> None:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}

    def known(module: str) -> str | None:  # a module, or the module a name was imported from
        while module and module not in modules:
            module = module.rpartition(".")[0]
        return module or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {known(module) for _, module in _imports(path, running=True)}
        graph[name] = {t for t in targets if t is not None and t != name and not name.startswith(t + ".")}
    # a module reaches itself again: a cycle (a package importing its own parent is not one:
    # the parent is being imported already, as Python imports packages before their modules)
    cycles = set()
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            if module == start:
                cycles.add(start)
                break
            if module not in seen:
                seen.add(module)
                todo += graph[module]
    assert not cycles, f"modules in import cycles (function-level imports included): {sorted(cycles)}"
