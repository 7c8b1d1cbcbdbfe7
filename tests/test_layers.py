"""The package's layers (docs/architecture.md): data flows one way, config -> layer ->
mapper -> program -> hardware -> results, and the imports say so.

Reads every module's imports, function-level ones included, and checks which layer
may import which, that no two files import each other through any chain, and the
size limits of files and functions.
"""

import ast
import pathlib

from helpers import ROOT

LAYERS = ("gen", "hw", "host", "sim", "nn", "boards", "toolchain", "explore", "cli")
MAY_IMPORT = {
    "gen": {"gen", "hw"},
    "hw": {"hw", "gen"},
    "host": {"host", "gen", "hw"},
    "toolchain": {"toolchain"},
    "sim": {"sim", "gen", "hw", "host", "toolchain"},
    "boards": {"boards", "gen", "hw", "host", "toolchain"},
    "nn": {"nn", "gen", "hw", "host", "sim"},
    "explore": {"explore", "gen", "sim", "nn", "boards", "toolchain"},
    "cli": set(LAYERS),
}
"""Which layers each layer may import. hw may use only the configuration of gen
(`HW_FROM_GEN`); gen uses hw's register and stream layouts; explore (sweeps) is imported
by cli alone."""

HW_FROM_GEN = {"ommatidia.gen.config"}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 800, 150


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(["ommatidia", *parts])] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name) if name.startswith("ommatidia.") else None
            if target and target != module:
                out.add(target)
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> str:
    return module.split(".")[1]


def test_layers_import_only_what_they_may():
    breaks = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
              if _layer(b) not in MAY_IMPORT[_layer(a)]
              or (_layer(a) == "hw" and _layer(b) == "gen" and b not in HW_FROM_GEN)]
    assert not breaks, "layer breaks:\n" + "\n".join(sorted(breaks))


def test_no_import_cycles():
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"modules importing each other: {cycles}"


def test_file_and_function_sizes():
    big = []
    for module, path in MODULES.items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            big.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not big, "over the size limits:\n" + "\n".join(big)


def test_the_checks_see_the_package():
    """The graph covers every layer and finds known edges, so an empty graph cannot pass."""
    assert {_layer(m) for m in MODULES} == set(LAYERS)
    assert "ommatidia.gen.config" in GRAPH["ommatidia.hw.pe"]
    assert "ommatidia.gen.model" in GRAPH["ommatidia.gen.compiler"]
    assert "ommatidia.gen.program" in GRAPH["ommatidia.gen.model.machine"] \
        or "ommatidia.gen.packing" in GRAPH["ommatidia.gen.model.machine"]
