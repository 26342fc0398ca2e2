"""Take the definitions out of a notebook, so tests and benchmarks run exactly the notebook's code.

The notebooks are the single source of truth: there is no copied module to drift away from them.

    from notebook_loader import load_definitions
    nb = load_definitions("01_architecture.ipynb")
    model = nb.GPTModel(nb.GPTConfig.from_preset("gpt2-small"))

`load_definitions` executes, in one fresh namespace and in notebook order, only the top-level
statements of each code cell that *define* something:

- imports (`import x`, `from x import y`),
- function and class definitions, decorators included,
- constants: assignments whose targets are all UPPER_CASE names (`GPT2_PRESETS = {...}`).

Everything else (prints, plots, training loops, asserts) is skipped, so loading is quick and has no
side effects beyond what those statements do. IPython magics and shell lines (`%...`, `!...`) are
ignored. A constant whose value needs a skipped statement fails with an error naming its cell.

`notebook_definitions` and `recap_mismatches` serve the recap-consistency test: a function or class
defined in more than one notebook must have identical source everywhere.
"""

from __future__ import annotations

import ast
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

DEFINITION_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True)
class Definition:
    """One top-level function or class of a notebook: where it is and its exact source text."""

    name: str
    notebook: str
    cell_index: int
    source: str


def _code_cells(notebook_path, tags=None):
    """Yield (cell index, Python source) of each code cell, magics and shell lines blanked out."""
    notebook = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        if tags is not None and not set(tags) & set(cell.get("metadata", {}).get("tags", [])):
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        # Keep line numbers intact (so errors point at the right line) by blanking, not deleting.
        lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n")]
        yield index, "\n".join(lines)


def _parse(notebook_path, index, source):
    try:
        return ast.parse(source)
    except SyntaxError as error:
        raise SyntaxError(f"{notebook_path}, code cell {index}: {error}") from error


def _is_constant_assignment(node):
    if isinstance(node, ast.AnnAssign):
        targets = [node.target]
    elif isinstance(node, ast.Assign):
        targets = node.targets
    else:
        return False
    names = [leaf for target in targets for leaf in ast.walk(target) if isinstance(leaf, ast.Name)]
    tuples_only = all(isinstance(t, (ast.Name, ast.Tuple)) for t in targets)
    return bool(names) and tuples_only and all(leaf.id.isupper() for leaf in names)


def _source_lines(source, node):
    """The exact lines of a definition, its decorators included."""
    first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
    return "\n".join(source.split("\n")[first - 1 : node.end_lineno])


def load_definitions(notebook_path, tags=None):
    """Execute the defining statements of a notebook's code cells; return them as a module.

    tags: if given, only code cells carrying at least one of these cell tags are read.
    The module is registered in sys.modules (as notebook_<stem>, e.g. notebook_01_architecture), which
    dataclasses and pickle need; loading the same notebook again replaces it.
    """
    notebook_path = Path(notebook_path)
    module = types.ModuleType(f"notebook_{notebook_path.stem}", f"Definitions of {notebook_path.name}")
    module.__file__ = str(notebook_path)
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    for index, source in _code_cells(notebook_path, tags):
        tree = _parse(notebook_path, index, source)
        kept = [node for node in tree.body if isinstance(node, DEFINITION_NODES) or _is_constant_assignment(node)]
        if not kept:
            continue
        code = compile(ast.Module(body=kept, type_ignores=[]), f"{notebook_path.name}[cell {index}]", "exec")
        try:
            exec(code, namespace)
        except Exception as error:
            raise RuntimeError(
                f"{notebook_path.name}, code cell {index}: a definition failed to load ({error!r}). "
                "A constant there may depend on a statement the loader skips; compute it inside a function instead."
            ) from error
    return module


def notebook_definitions(notebook_path):
    """All top-level functions and classes of a notebook, as {name: [Definition, ...]} in notebook order."""
    notebook_path = Path(notebook_path)
    found = {}
    for index, source in _code_cells(notebook_path):
        for node in _parse(notebook_path, index, source).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                definition = Definition(node.name, notebook_path.name, index, _source_lines(source, node))
                found.setdefault(node.name, []).append(definition)
    return found


def recap_mismatches(notebook_paths):
    """Definitions whose source differs between (or within) notebooks.

    Returns a list of (name, [Definition, ...]) for every function or class name that is defined more
    than once across `notebook_paths` with more than one distinct source text. Empty means consistent.
    """
    by_name = {}
    for path in notebook_paths:
        for name, definitions in notebook_definitions(path).items():
            by_name.setdefault(name, []).extend(definitions)
    return [
        (name, definitions)
        for name, definitions in sorted(by_name.items())
        if len({definition.source for definition in definitions}) > 1
    ]
