"""The package's layers, read from the source with `ast` (nothing is imported): no import cycles, a module
imports only from its own layer or a lower one, and the torch-free folders stay free of torch.

A layer is a folder of `shapeshift/` (`shapeshift.qc.bank` is in `qc`); the files at the top of
`shapeshift/` are the commands users type (`python -m shapeshift.train`), and so are the command packages
`audit/` and `explain/`. A new folder needs a place in `LAYERS`, and its `__init__.py` states its rule.
Imports inside functions count for the layers and cycles (they are dependencies all the same); only
imports run at import time count for `TORCH_FREE`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shapeshift"
COMMANDS = "commands"  # the part of every module at the top of shapeshift/ (and of the command packages)
ROOT = "shapeshift"  # the package's own __init__: below everything

# Folders, bottom to top. A module may import from its own layer or a lower one.
LAYERS: list[tuple[str, set[str]]] = [
    ("package", {ROOT}),
    ("run folders", {"runs"}),
    ("config", {"config"}),
    ("console", {"console"}),
    ("data", {"data"}),
    ("models", {"models"}),
    ("qc", {"qc"}),
    ("engine", {"engine"}),
    ("reporting", {"reporting"}),
    ("tracking", {"tracking"}),
    ("commands", {COMMANDS}),
]
COMMAND_PACKAGES = {"audit", "explain"}  # folders that are commands (`python -m shapeshift.audit`)

# Folders (and commands) that must import without torch (reading a report or a run folder's files): what
# they import at import time, followed through shapeshift's own modules, never reaches a module that imports
# one of `TORCH`.
TORCH_FREE = {ROOT, "runs", "console", "reporting", "shapeshift.report"}
TORCH = {
    "torch",
    "lightning",
    "pytorch_lightning",
    "torchmetrics",
    "torchvision",
    "torchcam",
    "antialiased_cnns",
    "timm",
}
# Modules that load torch at import in a way `ast` does not see as an import: the schema module calls
# register_schemas() at import, which reads Lightning's Trainer signature.
LOADS_TORCH_AT_IMPORT = {"shapeshift.config.schema"}

# Today's exceptions to the layer order, each (module imported, name imported): allowed from any layer.
UPWARD_ALLOWED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    target: str  # module name, resolved
    name: str | None  # the name taken from `target` by `from target import name`; None for `import target`
    where: str  # file:line
    statement: str  # as written, one name of it
    at_import_time: bool  # not inside a function

    def __str__(self) -> str:
        return f"{self.where}: {self.statement}"


def part(module: str, package: Path = PACKAGE) -> str:
    """The folder a module is in, `commands` for a top-level module or a command package, else the package."""
    names = module.split(".")
    if len(names) == 1:
        return ROOT
    if names[1] in COMMAND_PACKAGES or (len(names) == 2 and not (package / names[1]).is_dir()):
        return COMMANDS
    return names[1]


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def _imports_in(tree: ast.AST, at_import_time: bool = True):
    """(node, at import time) for every import statement; a function's body runs later, a class's at once."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, at_import_time
        inside_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _imports_in(child, at_import_time and not inside_function)


def parse(package: Path = PACKAGE) -> tuple[dict[str, Path], list[Import], dict[str, set[str]], list[str]]:
    """Modules, imports between them, the external top-level packages each imports at import time, and the
    imports of shapeshift modules that do not exist."""
    mods = modules(package)
    root = package.name
    edges, external, missing = [], {m: set() for m in mods}, []
    for module, path in mods.items():
        is_package = path.name == "__init__.py"
        for node, now in _imports_in(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(package.parent)}:{node.lineno}"
            if isinstance(node, ast.Import):
                targets = [(a.name, None, f"import {a.name}") for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the importer's package
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = []
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    written = f"from {'.' * node.level}{node.module or ''} import {a.name}"
                    targets.append((sub, None, written) if sub in mods else (base, a.name, written))
            for target, name, statement in targets:
                if target.split(".")[0] != root:
                    if now:
                        external[module].add(target.split(".")[0])
                    continue
                if target not in mods:
                    missing.append(f"{where}: {target} (no such module)")
                    continue
                edges.append(Import(module, target, name, where, statement, now))
    return mods, edges, external, missing


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def layer_of() -> dict[str, int]:
    return {p: i for i, (_, parts) in enumerate(LAYERS) for p in parts}


def upward_imports(edges: list[Import], package: Path = PACKAGE) -> tuple[list[str], set[tuple[str, str]]]:
    """Imports from a higher layer, and which of `UPWARD_ALLOWED` were used."""
    layer, names = layer_of(), [n for n, _ in LAYERS]
    bad, used = [], set()
    for e in edges:
        low, high = layer[part(e.importer, package)], layer[part(e.target, package)]
        if high <= low:
            continue
        if (e.target, e.name) in UPWARD_ALLOWED:
            used.add((e.target, e.name))
            continue
        bad.append(f"{e} ({e.importer} is in layer '{names[low]}', {e.target} in the higher '{names[high]}')")
    return bad, used


def torch_reached(mods: dict[str, Path], edges: list[Import], external: dict[str, set[str]]) -> list[str]:
    """For each torch-free module that imports torch at import time, through shapeshift modules: the chain."""
    now: dict[str, set[str]] = {m: set() for m in mods}
    for e in edges:
        if e.at_import_time:
            now[e.importer].add(e.target)
    for m in mods:  # importing a.b.c runs a/__init__ and a/b/__init__ first
        parents = m.split(".")
        now[m].update(".".join(parents[:i]) for i in range(1, len(parents)) if ".".join(parents[:i]) in mods)
    bad = []
    for start in sorted(m for m in mods if part(m) in TORCH_FREE or m in TORCH_FREE):
        chain, seen, todo = {start: [start]}, {start}, [start]
        while todo:
            m = todo.pop(0)
            heavy = external[m] & TORCH | ({"torch"} if m in LOADS_TORCH_AT_IMPORT else set())
            if heavy:
                bad.append(f"{start} imports {sorted(heavy)} via {' -> '.join(chain[m])}")
                break
            for t in sorted(now[m] - seen):
                seen.add(t)
                chain[t] = [*chain[m], t]
                todo.append(t)
    return bad


@pytest.fixture(scope="module")
def parsed():
    return parse()


def test_every_import_resolves(parsed):
    _, _, _, missing = parsed
    assert not missing, "imports of shapeshift modules that do not exist:\n" + "\n".join(missing)


def test_every_folder_has_a_layer_and_states_its_rule():
    placed = layer_of()
    assert len(placed) == sum(len(parts) for _, parts in LAYERS), "a folder is in two layers"
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    unplaced = sorted(folders - set(placed) - COMMAND_PACKAGES)
    assert not unplaced, (
        f"give these folders of shapeshift/ a layer in tests/test_layers.py LAYERS: {unplaced}"
    )
    for folder in sorted(folders - COMMAND_PACKAGES):
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text())) or ""
        assert "Rule:" in doc, f"shapeshift/{folder}/__init__.py: state the folder's rule in its docstring"


def test_the_top_level_holds_only_commands():
    """A module at the top of shapeshift/ is a command users type: it has a `main` and runs it as __main__."""
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "__init__.py":
            continue
        text = path.read_text()
        assert "def main(" in text and 'if __name__ == "__main__":' in text, (
            f"{path.name} is not a command: move it into the folder of what it knows"
        )
    for folder in sorted(COMMAND_PACKAGES):
        assert (PACKAGE / folder / "__main__.py").is_file(), (
            f"{folder}/ is a command package with no __main__"
        )


def test_no_import_cycles(parsed):
    mods, edges, _, _ = parsed
    graph = {m: set() for m in mods}
    for e in edges:
        if e.target != e.importer:
            graph[e.importer].add(e.target)
    cycle = find_cycle(graph)
    if cycle:
        steps = [
            next(str(e) for e in edges if e.importer == a and e.target == b)
            for a, b in zip(cycle, cycle[1:], strict=False)
        ]
        pytest.fail("import cycle " + " -> ".join(cycle) + ":\n" + "\n".join(steps))


def test_modules_import_only_their_own_layer_or_lower(parsed):
    _, edges, _, _ = parsed
    bad, used = upward_imports(edges)
    order = " < ".join(f"{name} {sorted(parts)}" for name, parts in LAYERS)
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad) + f"\nlayers, bottom to top: {order}"
    assert used == UPWARD_ALLOWED, (
        f"no longer imported upward, drop from UPWARD_ALLOWED: {UPWARD_ALLOWED - used}"
    )


def test_torch_free_parts_import_no_torch(parsed):
    mods, edges, external, _ = parsed
    bad = torch_reached(mods, edges, external)
    assert not bad, "torch-free parts that import torch at import time:\n" + "\n".join(bad)


def test_qc_imports_no_engine_reporting_or_command(parsed):
    """The detector library sits below everything that runs a model or a command."""
    _, edges, _, _ = parsed
    above = {"engine", "reporting", "tracking", COMMANDS}
    bad = [str(e) for e in edges if part(e.importer) == "qc" and part(e.target) in above]
    assert not bad, "shapeshift/qc/ imports from above it:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("path", "line", "offending"),
    [
        (
            "qc/bank.py",
            "from shapeshift.engine.pipeline import build_datamodule",
            "qc/bank.py:2: from shapeshift.engine.pipeline",
        ),
        (
            "models/cnn.py",
            "from shapeshift.qc.gate import threshold",
            "models/cnn.py:2: from shapeshift.qc.gate",
        ),
        (
            "runs/folder.py",
            "import shapeshift.reporting.stats",
            "runs/folder.py:2: import shapeshift.reporting.stats",
        ),
        (
            "engine/pipeline.py",
            "from shapeshift.train import main",
            "engine/pipeline.py:2: from shapeshift.train",
        ),
    ],
)
def test_an_upward_import_is_named(tmp_path, path, line, offending):
    """The checks on a small copy of the layout: an import from a higher layer is caught and named."""
    package = tmp_path / "shapeshift"
    for name in [
        "__init__.py",
        "train.py",
        "runs/__init__.py",
        "runs/folder.py",
        "reporting/__init__.py",
        "reporting/stats.py",
        "models/__init__.py",
        "models/cnn.py",
        "qc/__init__.py",
        "qc/gate.py",
        "qc/bank.py",
        "engine/__init__.py",
        "engine/pipeline.py",
    ]:
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text('"""x"""\n')
    (package / path).write_text(f'"""x"""\n{line}\n')
    _, edges, _, missing = parse(package)
    assert not missing
    bad, _ = upward_imports(edges, package)
    assert len(bad) == 1 and bad[0].startswith(f"shapeshift/{offending}"), bad


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
