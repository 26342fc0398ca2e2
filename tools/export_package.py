"""Regenerate the `gpt2_from_scratch` package from the notebooks: the notebooks are the only source.

    python tools/export_package.py          # rewrite gpt2_from_scratch/ from the notebooks
    python tools/export_package.py --check  # change nothing; exit 1 if the package is stale or a
                                            # function or class is written in two places

A code cell whose first line is `#| export` (nbdev's directive) goes into the module of its notebook,
in notebook order: 01_architecture.ipynb -> gpt2_from_scratch/architecture.py, and so on (NOTEBOOK_MODULES).
Later notebooks import what earlier ones taught from these modules, so each definition is written once.

An exported cell may hold only imports, functions, classes and UPPER_CASE constants, so importing a
module runs no notebook code; every name a module uses must be defined or imported in it. The
exporter refuses anything else with the notebook, the cell and the line.

nbdev (https://nbdev.fast.ai) exports cells the same way, with the same directive; this short script
does the one part of it that the series needs, with these checks and no extra packages.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import json
import re
import symtable
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "gpt2_from_scratch"
NOTEBOOK_MODULES = {
    "01_architecture.ipynb": "architecture",
    "02_pretraining.ipynb": "pretraining",
    "03_pretrained_weights.ipynb": "weights",
    "04_finetune_classify.ipynb": "classify",
    "05_finetune_instruct.ipynb": "instruct",
}
DIRECTIVE = "#| export"
DIRECTIVE_PATTERN = re.compile(r"#\|\s*export\s*")  # nbdev also accepts "#|export"
COMMAND = "python tools/export_package.py"
# Files besides the notebooks whose top-level functions and classes must not repeat a notebook's.
OTHER_SOURCES = ("gpt_download.py", "gpt2_cli.py", "benchmarks/*.py")


class ExportError(ValueError):
    """A notebook cell cannot be exported as it is."""


@dataclass(frozen=True)
class Cell:
    notebook: str
    index: int          # position among all the notebook's cells, as Jupyter counts them from 0
    section: str        # the last markdown heading above the cell
    source: str
    exported: bool


def notebook_cells(notebook_path):
    """The code cells of a notebook, each with the heading of the section it is in."""
    notebook_path = Path(notebook_path)
    cells = json.loads(notebook_path.read_text(encoding="utf-8"))["cells"]
    section, found = "", []
    for index, cell in enumerate(cells):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            headings = [line.lstrip("#").strip() for line in source.splitlines() if line.startswith("#")]
            section = headings[-1] if headings else section
        elif cell["cell_type"] == "code":
            first_line, _, rest = source.partition("\n")
            exported = DIRECTIVE_PATTERN.fullmatch(first_line.strip()) is not None
            # The directive's line is blanked, not removed, so line numbers stay those of the cell.
            found.append(Cell(notebook_path.name, index, section, "\n" + rest if exported else source, exported))
    return found


def _where(cell, node=None):
    line = f", line {node.lineno}" if node is not None else ""
    return f"{cell.notebook}, cell {cell.index} ({cell.section!r}){line}"


def _constant_names(node):
    """The names an UPPER_CASE constant assignment binds (`A = 1`, `A, B = 1, 2`), else []."""
    if not isinstance(node, (ast.Assign, ast.AnnAssign)):
        return []
    targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
    leaves = [leaf for target in targets for leaf in (target.elts if isinstance(target, ast.Tuple) else [target])]
    if not leaves or not all(isinstance(leaf, ast.Name) and leaf.id.isupper() for leaf in leaves):
        return []  # an attribute or item assignment (CONFIG.x = 1) changes state: not a constant
    return [leaf.id for leaf in leaves]


def check_exported_cell(cell):
    """Refuse an exported cell that would run anything but definitions when its module is imported."""
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as error:
        raise ExportError(f"{_where(cell)}: {error}") from error
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            raise ExportError(f"{_where(cell, node)}: `import *` hides where names come from; name them")
        definition = isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)) or _constant_names(node)
        if not definition:
            statement = ast.get_source_segment(cell.source, node).split("\n")[0]
            raise ExportError(
                f"{_where(cell, node)}: an exported cell may hold only imports, functions, classes and "
                f"UPPER_CASE constants, not `{statement}`; move it to a cell without {DIRECTIVE!r}"
            )


def undefined_names(source, filename):
    """Names a module's code reads that the module neither defines nor imports, nor are builtins."""
    known = set(dir(builtins)) | {"__file__", "__name__"}
    top = symtable.symtable(source, filename, "exec")
    defined = {symbol.get_name() for symbol in top.get_symbols() if symbol.is_assigned() or symbol.is_imported()}
    missing = {symbol.get_name() for symbol in top.get_symbols() if symbol.is_referenced()} - defined
    tables = list(top.get_children())
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        missing |= {symbol.get_name() for symbol in table.get_symbols()
                    if symbol.is_global() and symbol.is_referenced() and symbol.get_name() not in defined}
    return sorted(missing - known)


def module_text(notebook_path, module):
    """The source of one generated module."""
    notebook_name = Path(notebook_path).name
    parts = [
        f"# Generated from {notebook_name}; edit the notebook, then regenerate: {COMMAND}\n"
        f'"""The definitions of {notebook_name}, for later notebooks, the tests and the benchmarks."""\n'
    ]
    for cell in notebook_cells(notebook_path):
        if cell.exported:
            check_exported_cell(cell)
            parts.append(f"# {notebook_name}: {cell.section}\n{cell.source.strip()}\n")
    text = "\n\n".join(parts)
    missing = undefined_names(text, f"{PACKAGE}/{module}.py")
    if missing:
        raise ExportError(f"{notebook_name}: its exported cells use {', '.join(missing)} without defining or "
                          f"importing them; export the cell that defines them, or import them in an exported cell")
    return text


def package_files(repo_root=REPO_ROOT):
    """{path relative to the repository: text} for every file of the package."""
    repo_root = Path(repo_root)
    modules = "\n".join(f"    {module:13} {notebook}" for notebook, module in NOTEBOOK_MODULES.items())
    files = {f"{PACKAGE}/__init__.py": (
        f"# Generated by {COMMAND}; edit the notebooks, then regenerate.\n"
        f'"""GPT-2 from scratch: what the notebooks define, one module per notebook.\n\n{modules}\n"""\n'
    )}
    for notebook, module in NOTEBOOK_MODULES.items():
        files[f"{PACKAGE}/{module}.py"] = module_text(repo_root / notebook, module)
    return files


def stale_files(repo_root=REPO_ROOT, expected=None):
    """The package's files that differ from what the notebooks generate: changed, missing or extra.

    expected: package_files(repo_root), if already generated.
    """
    repo_root = Path(repo_root)
    expected = package_files(repo_root) if expected is None else expected
    present = {path.relative_to(repo_root).as_posix() for path in (repo_root / PACKAGE).glob("*.py")}
    stale = [path for path, text in expected.items()
             if not (repo_root / path).is_file() or (repo_root / path).read_text(encoding="utf-8") != text]
    return sorted(stale + sorted(present - set(expected)))


def write_package(repo_root=REPO_ROOT):
    """Regenerate the package; return the files that changed."""
    repo_root = Path(repo_root)
    files = package_files(repo_root)  # everything is generated (and checked) before anything is written
    changed = stale_files(repo_root, files)
    (repo_root / PACKAGE).mkdir(exist_ok=True)
    for path in (repo_root / PACKAGE).glob("*.py"):
        if path.relative_to(repo_root).as_posix() not in files:
            path.unlink()
    for path, text in files.items():
        target = repo_root / path
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            partial = target.with_name(target.name + ".partial")
            partial.write_text(text, encoding="utf-8")
            partial.replace(target)
    return changed


def _parse_for_duplicates(source, where):
    try:
        return ast.parse(source)
    except SyntaxError as error:
        raise ExportError(f"{where}: cannot be parsed ({error.msg}, line {error.lineno}); "
                          "IPython syntax other than a whole-line %magic or !command is not supported") from error


def _top_level_definitions(tree, where):
    """(name, place) of each top-level function and class."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, f"{where}, line {node.lineno}"


def duplicate_definitions(repo_root=REPO_ROOT):
    """Functions, classes and exported constants written in more than one place: {name: [where, ...]}.

    Reads every code cell of the notebooks (exported or not) and the Python files of OTHER_SOURCES. A
    function or class may be written once; so may an UPPER_CASE constant that an exported cell defines
    (one that no cell exports, such as each chapter's own BATCH_SIZE, is that chapter's setting).
    """
    repo_root = Path(repo_root)
    places, constants, exported_constants = {}, {}, set()
    sources = []
    for notebook in NOTEBOOK_MODULES:
        if (repo_root / notebook).is_file():
            for cell in notebook_cells(repo_root / notebook):
                source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                                   for line in cell.source.split("\n"))
                sources.append((_parse_for_duplicates(source, _where(cell)), _where(cell), cell.exported))
    for pattern in OTHER_SOURCES:
        for path in sorted(repo_root.glob(pattern)):
            where = path.relative_to(repo_root).as_posix()
            sources.append((_parse_for_duplicates(path.read_text(encoding="utf-8"), where), where, False))
    for tree, where, exported in sources:
        for name, place in _top_level_definitions(tree, where):
            places.setdefault(name, []).append(place)
        for node in tree.body:
            for name in _constant_names(node):
                constants.setdefault(name, []).append(f"{where}, line {node.lineno}")
                if exported:
                    exported_constants.add(name)
    for name in exported_constants:
        places.setdefault(name, []).extend(constants[name])
    return {name: where for name, where in sorted(places.items()) if len(where) > 1}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is out of date")
    arguments = parser.parse_args(argv)
    try:
        duplicates = duplicate_definitions(REPO_ROOT)
        if duplicates:
            raise ExportError("written in more than one place (keep one, import it elsewhere):\n" + "\n".join(
                f"  {name}: " + "; ".join(where) for name, where in duplicates.items()))
        if arguments.check:
            stale = stale_files(REPO_ROOT)
            if stale:
                print(f"out of date: {', '.join(stale)}; run {COMMAND}", file=sys.stderr)
                return 1
            print(f"{PACKAGE} is up to date with the notebooks")
        else:
            changed = write_package(REPO_ROOT)
            print(f"{PACKAGE}: " + (f"regenerated {', '.join(changed)}" if changed else "already up to date"))
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
