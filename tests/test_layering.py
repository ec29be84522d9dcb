"""The package's folders are its reading order: no module imports from a layer above it.

Layers, lowest first (a module may import from its own layer and the ones below):
    core       version, config, params, ops/ (the NumPy reference), testing
    kernels    kernels/ (the Numba twin and everything that exists only for speed: the
               thread pool, the batch's shards)
    model      model, optim, gradcheck (they pick a backend by name at run time)
    data       data/
    training   training/
    interp     interp/ (metrics, ablations, paths, attribution, analysis, ...)
    app        app/ (reproduce, figures, report, bench), exercises/
    cli        cli/, and the package's own __init__ / __main__ (they expose everything)
"""
import ast
from pathlib import Path

import pytest

import minih

PACKAGE = Path(minih.__file__).parent
LAYERS = [
    ("core", ["version", "config", "params", "ops", "testing"]),
    ("kernels", ["kernels"]),
    ("model", ["model", "optim", "gradcheck"]),
    ("data", ["data"]),
    ("training", ["training"]),
    ("interp", ["interp"]),
    ("app", ["app", "exercises"]),
    ("cli", ["cli", "__init__", "__main__"]),
]
RANK = {top: rank for rank, (_, tops) in enumerate(LAYERS) for top in tops}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts)


def import_target(path: Path, node) -> str | None:
    """The absolute module an `import` / `from ... import` node names, if it is minih's."""
    if isinstance(node, ast.ImportFrom):
        package = module_name(path)
        if path.name != "__init__.py":
            package = package.rsplit(".", 1)[0]
        package = package.removesuffix(".__init__")
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        return target if target == "minih" or target.startswith("minih.") else None
    return None


def imported_modules(path: Path):
    """Every minih module that `path` imports (absolute names), with the line number and
    the imported names."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            target = import_target(path, node)
            if target is not None:
                yield node.lineno, target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("minih."):
                    yield node.lineno, a.name, []


def top_of(module: str, names=()) -> list[str]:
    """The top-level parts of minih that an import reaches (`from minih import data` -> data)."""
    parts = module.split(".")
    if len(parts) >= 2:
        return [parts[1]]
    return [n for n in names if n in RANK] or ["__init__"]


def test_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert tops <= set(RANK), f"modules without a layer: {sorted(tops - set(RANK))}"


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = RANK[path.relative_to(PACKAGE).parts[0].removesuffix(".py")]
        for line, target, names in imported_modules(path):
            for top in top_of(target, names):
                if RANK[top] > here:
                    upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} "
                                  f"({LAYERS[RANK[top]][0]} is above {LAYERS[here][0]})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_reference_is_plain_numpy():
    """minih/ops/ imports numpy, math and its own modules only: no threads, no Numba,
    nothing a student stepping through it in a debugger would land in."""
    found = []
    for path in sorted((PACKAGE / "ops").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level == 1 else [node.module or ""]
            else:
                continue
            found += [f"{path.name}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[0] not in ("numpy", "math", "__future__")]
    assert not found, "\n".join(found)


def test_ablations_and_paths_run_the_models_own_forward():
    """The model's steps are written once, in minih/model.py: ablations and the path
    expansion edit that forward at its hook points and never call an op of a layer
    themselves (only the loss of the logits it returns)."""
    from minih import ops
    allowed = {"per_token_loss"}
    found = []
    for rel in ("interp/ablation.py", "interp/paths.py", "interp/attribution.py"):
        tree = ast.parse((PACKAGE / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ops.__all__ and node.attr not in allowed:
                found.append(f"{rel}:{node.lineno} calls the op {node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module and "ablation" in node.module:
                found += [f"{rel}:{node.lineno} imports ablation's private {a.name}"
                          for a in node.names if a.name.startswith("_")]
    assert not found, "\n".join(found)


def test_no_import_circle():
    """No two modules import each other, directly or round a loop, counting the imports
    inside functions too (they run later, but a reader still meets the circle)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        name = module_name(path).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.ImportFrom, ast.Import)):
                for _, target, names in imported_modules_of_node(path, node):
                    if target != "minih":              # the root re-exports; nothing below needs it
                        deps.add(target)
        graph[name] = deps
    # resolve `from pkg import submodule` to the submodule where it exists
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for d in graph.get(n, ()):
            if d == n or n.startswith(d + "."):      # a package's own __init__ is loaded first
                continue
            if state.get(d) == "open":
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n)


def imported_modules_of_node(path, node):
    """imported_modules for one node, with `from pkg import submodule` resolved to the
    submodule where one exists (the edge of the import graph is then to that module)."""
    if isinstance(node, ast.ImportFrom):
        target = import_target(path, node)
        if target is not None:
            subs = [f"{target}.{a.name}" for a in node.names
                    if (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                    or (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).is_dir()]
            for t in subs or [target]:
                yield node.lineno, t, []
    else:
        for a in node.names:
            if a.name.startswith("minih."):
                yield node.lineno, a.name, []
