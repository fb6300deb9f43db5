"""The layout rules of ../shared/ARCHITECTURE.md that import-linter does not cover: no import
cycle between modules, no import of another module's private name, and modules and
functions short enough to read (STYLE.md: modules under ~400 lines, functions under ~50)."""
import ast
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scaletrain"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# name -> why it may be longer; each entry must still exist (a stale one fails the test)
LONG_FUNCTIONS = {
    "scaletrain.train.loop.train_loop": "the whole training loop on one screen, as nanoGPT's: every "
                                        "step's order is visible in one place (STYLE.md)",
}
LONG_MODULES: dict[str, str] = {}
MAX_PARAMETERS = 8
_VERB = "a typer verb: one parameter per command-line flag"
_FACADE = "a user-facing function: one keyword per documented option, as api.py passes them"
_DEBT = "internal, not yet folded into a typed value: the next step of issue 32"
WIDE_FUNCTIONS = {  # name -> why it takes more than MAX_PARAMETERS (self not counted)
    **{f"scaletrain.cli.{m}": _VERB for m in ("fit.train", "fit.prepare", "fit.pretrain", "fit.tune", "ship.serve",
                                              "ship.compress", "study.scale")},
    "scaletrain.cli.fit._cross_validate": "the train verb's flags, handed on when --cv is given",
    "scaletrain.api.fit": _FACADE, "scaletrain.api.pretrain": _FACADE, "scaletrain.scale.scale": _FACADE,
    "scaletrain.tune.search.tune": _FACADE, "scaletrain.compress.compress_run": _FACADE,
    "scaletrain.modalities.table.shards.prepare_table_shards": _FACADE,
    "scaletrain.modalities.image.shards.prepare_image_shards": _FACADE,
    "scaletrain.pretraining.shards.prepare_corpus": _FACADE,
    "scaletrain.estimators._ScaleEstimator.__init__": "scikit-learn: every hyperparameter a constructor argument",
    **{f"scaletrain.{f}": _DEBT for f in ("compress._compress", "data.batches.TensorBatches.__init__",
                                          "modalities.image.shards._prepare_images", "modalities.table.shards._prepare",
                                          "data.stream.ShardBatches.__init__", "evaluate.report.build_report",
                                          "models.vision.build_convnet", "train.checkpoint.Checkpoint.__init__",
                                          "train.lr_find.lr_range_test", "tune.search.make_plan", "tune.search._retrain")},
}
# file -> why a task's name may be written there: outside tasks/, code asks the task instead
TASK_NAME_LITERALS = {
    "config.py": "data.task's enum: the values a user may write",
    "serve/schema.py": "OpenAPI's string format 'binary' for file uploads, not a task",
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.find_modules_directly_imported_by(node):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_its_way_back_to_itself():
    graph = grimp.build_graph("scaletrain", cache_dir=None)
    # a package's __init__ re-exporting its own submodules is how a registry is written, not a cycle
    for module in list(graph.modules):
        for child in graph.find_children(module):
            if graph.direct_import_exists(importer=module, imported=child):
                graph.remove_import(importer=module, imported=child)
    assert _cycles(graph) == []


def test_no_module_imports_another_modules_private_names():
    found = []
    for name, path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scaletrain"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                found += [f"{name} imports {node.module}.{p}" for p in private]
    assert found == []


def test_modules_and_functions_are_short_enough_to_read():
    long_modules, long_functions = {}, {}
    for name, path in _modules():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            long_modules[name] = lines
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions[f"{name}.{node.name}"] = length
    assert {k: v for k, v in long_modules.items() if k not in LONG_MODULES} == {}
    assert {k: v for k, v in long_functions.items() if k not in LONG_FUNCTIONS} == {}
    assert set(LONG_FUNCTIONS) <= set(long_functions) and set(LONG_MODULES) <= set(long_modules)  # none stale


def test_only_tasks_name_tasks():
    """A new task (ranking, multilabel) is a module in tasks/ and a registry line: nothing else
    branches on a task's name."""
    import re

    found = {}
    for _, path in _modules():
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith("tasks/"):
            continue
        hits = [n for n, line in enumerate(path.read_text().splitlines(), 1)
                if re.search(r'"(regression|binary|multiclass)"', line)]
        if hits:
            found[where] = hits
    assert set(found) == set(TASK_NAME_LITERALS), found


def _parameters(node) -> int:
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    return len(names) - (names[:1] in (["self"], ["cls"])) + bool(a.vararg) + bool(a.kwarg)


def test_functions_take_few_parameters():
    """Wide signatures are where typed values are missing (fit_model took 18)."""
    wide = {}
    for name, path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and _parameters(child) > MAX_PARAMETERS:
                    owner = f".{node.name}" if isinstance(node, ast.ClassDef) else ""
                    wide[f"{name}{owner}.{child.name}"] = _parameters(child)
    assert {k: v for k, v in wide.items() if k not in WIDE_FUNCTIONS} == {}
    assert set(WIDE_FUNCTIONS) <= set(wide)  # none stale


@pytest.mark.parametrize("name,importers", [
    ("audio", {"modalities/__init__.py"}),  # the registry line (its explainer reads the front from data/log_mel.py)
    ("sequence", {"modalities/__init__.py"}),
])
def test_a_modality_is_one_package_and_one_registry_line(name, importers):
    """Nothing outside the modality's package imports it but the registry (and its explainer,
    found by name), and no code elsewhere names it: no branch on the kind of data."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n.startswith(f"scaletrain.modalities.{name}") for n in names):
                found.add(path.relative_to(PACKAGE).as_posix())
    assert {p for p in found if not p.startswith(f"modalities/{name}/")} == importers
    branches = [p for p in PACKAGE.rglob("*.py") if not p.is_relative_to(PACKAGE / "modalities" / name)
                and f'"{name}"' in p.read_text(encoding="utf-8")]
    assert not branches, branches
