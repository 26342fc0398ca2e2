"""Regenerate the `gpt2_from_scratch` package from the notebooks: the notebooks are the only source.

    python tools/export_package.py          # rewrite gpt2_from_scratch/ from the notebooks
    python tools/export_package.py --check  # change nothing; exit 1 if the package is stale

Both exit 1 if a function or class is written in two places (the notebooks, gpt_download.py,
gpt2_support/, benchmarks/, figures/, exercises/: OTHER_SOURCES).

Each notebook of the series (0*_*.ipynb at the repository's root) names its module in a code cell
whose first line is `#| default_exp <module>`: `#| default_exp architecture` in 01_architecture.ipynb
makes gpt2_from_scratch/architecture.py. A code cell whose first line is `#| export` goes into that
module, in notebook order, under a comment naming the notebook, the cell and its section. Later
notebooks import what earlier ones taught from these modules, so each definition is written once.

An exported cell may hold only imports, functions, classes and UPPER_CASE constants, so importing a
module runs no notebook code. Every name a module uses must be defined or imported in it, and every
import in it must be used by its definitions: an import only the notebook's demonstrations need goes
in a cell without `#| export`. Each module's `__all__` lists the functions, classes and constants it
defines. The exporter refuses anything else with the notebook, the cell and the line.

nbdev (https://nbdev.fast.ai) exports cells the same way, with the same directives; this short script
does the one part of it that the series needs, with these checks and no extra packages.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import json
import keyword
import re
import symtable
import sys
from dataclasses import dataclass
from pathlib import Path

from gpt2_support.files import atomic_write_path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "gpt2_from_scratch"
NOTEBOOKS = "0*_*.ipynb"  # the series' notebooks, at the repository's root (pytest.ini runs the same ones)
DIRECTIVE = "#| export"
DIRECTIVE_PATTERN = re.compile(r"#\|\s*export\s*")  # nbdev also accepts "#|export"
MODULE_DIRECTIVE = "#| default_exp"
MODULE_DIRECTIVE_PATTERN = re.compile(r"#\|\s*default_exp\b\s*(.*?)\s*")
COMMAND = "python tools/export_package.py"
# Files besides the notebooks whose top-level functions and classes must not repeat a notebook's.
OTHER_SOURCES = ("gpt_download.py", "gpt2_support/*.py", "benchmarks/*.py", "figures/*.py", "exercises/*.py")
# Names each script defines for itself: its command line's entry point.
OWN_TO_EACH_FILE = {"main"}


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


def notebook_modules(repo_root=REPO_ROOT):
    """{notebook file name: module name} for every notebook of the series, in file-name order.

    Each notebook declares its module in a code cell whose first line is `#| default_exp <module>`.
    """
    repo_root = Path(repo_root)
    notebooks = sorted(repo_root.glob(NOTEBOOKS))
    if not notebooks:
        raise ExportError(f"no notebooks ({NOTEBOOKS}) in {repo_root}")
    modules, declared_by = {}, {}
    for notebook_path in notebooks:
        module = declared_module(notebook_path)
        if module in declared_by:
            raise ExportError(f"{declared_by[module]} and {notebook_path.name} both declare "
                              f"`{MODULE_DIRECTIVE} {module}`; give each notebook a module of its own")
        declared_by[module] = notebook_path.name
        modules[notebook_path.name] = module
    return modules


def declared_module(notebook_path):
    """The module a notebook's `#| default_exp <module>` cell names."""
    notebook_path = Path(notebook_path)
    cells = json.loads(notebook_path.read_text(encoding="utf-8"))["cells"]
    found = []  # (cell index, module)
    for index, cell in enumerate(cells):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        match = MODULE_DIRECTIVE_PATTERN.fullmatch(source.partition("\n")[0].strip())
        if cell["cell_type"] == "code" and match:
            found.append((index, match.group(1)))
    fix = (f"near the top of the notebook, a code cell whose first line is `{MODULE_DIRECTIVE} <module>` "
           f"names the module of {PACKAGE} its `{DIRECTIVE}` cells go to")
    if not found:
        raise ExportError(f"{notebook_path.name} declares no module: {fix}")
    if len(found) > 1:
        cells_text = " and ".join(str(index) for index, _ in found)
        raise ExportError(f"{notebook_path.name}, cells {cells_text}: more than one `{MODULE_DIRECTIVE}`; keep one")
    index, module = found[0]
    if not module.isidentifier() or keyword.iskeyword(module) or module.startswith("_"):
        raise ExportError(f"{notebook_path.name}, cell {index}: `{MODULE_DIRECTIVE} {module}` is not a module "
                          f"name that can be imported; use a lowercase Python name such as `architecture`")
    return module


def _names_read_and_bound(source, filename):
    """(names the module's code reads from its top level, in any scope; names its top level binds)."""
    top = symtable.symtable(source, filename, "exec")
    bound = {symbol.get_name() for symbol in top.get_symbols() if symbol.is_assigned() or symbol.is_imported()}
    read = {symbol.get_name() for symbol in top.get_symbols() if symbol.is_referenced()}
    tables = list(top.get_children())
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        read |= {symbol.get_name() for symbol in table.get_symbols() if symbol.is_global() and symbol.is_referenced()}
    return read, bound


def undefined_names(source, filename):
    """Names a module's code reads that the module neither defines nor imports, nor are builtins."""
    known = set(dir(builtins)) | {"__file__", "__name__"}
    read, bound = _names_read_and_bound(source, filename)
    return sorted(read - bound - known)


def unused_imports(cells, source, filename):
    """(cell, line, name) for each name the exported cells import that nothing in the module reads.

    source: the module's text, made from these cells.
    """
    read, _ = _names_read_and_bound(source, filename)
    unused = []
    for cell in cells:
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue  # a compiler switch, not a name
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    # `import torch.nn` binds `torch`; `import torch.nn as nn` binds `nn`
                    name = alias.asname or alias.name.split(".")[0]
                    if name not in read:
                        unused.append((cell, alias.lineno, name))
    return unused


def public_names(cells):
    """The functions, classes and UPPER_CASE constants the cells define, in order: the module's __all__.

    Imported names are not the module's own, and a name starting with `_` is private.
    """
    names = []
    for cell in cells:
        for node in ast.parse(cell.source).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined = [node.name]
            else:
                defined = _constant_names(node)
            names.extend(name for name in defined if not name.startswith("_") and name not in names)
    return names


def _all_statement(names, width=110):
    """`__all__ = [...]`, wrapped to the linter's line length."""
    lines, line = [], ""
    for quoted in (f'"{name}",' for name in names):
        if line and len(line) + 1 + len(quoted) > width:
            lines.append(line)
            line = ""
        line = f"{line} {quoted}" if line else quoted
    if line:
        lines.append(line)
    return "__all__ = [\n" + "".join(f"    {line}\n" for line in lines) + "]\n"


def cell_marker(cell):
    """The comment that heads a cell's code in its module, so a reader can find the cell."""
    section = f' (section "{cell.section}")' if cell.section else ""
    return f"# {cell.notebook}, cell {cell.index}{section}"


def module_text(notebook_path, module):
    """The source of one generated module."""
    notebook_name = Path(notebook_path).name
    filename = f"{PACKAGE}/{module}.py"
    exported = [cell for cell in notebook_cells(notebook_path) if cell.exported]
    for cell in exported:
        check_exported_cell(cell)
    parts = [
        f"# Generated from {notebook_name}; edit the notebook, then regenerate: {COMMAND}\n"
        f'"""The definitions of {notebook_name}, for later notebooks, the tests and the benchmarks.\n\n'
        "Each part below is one exported cell of the notebook, headed by the cell's number (counted from 0,\n"
        'markdown cells included) and its section.\n"""\n',
        _all_statement(public_names(exported)),
    ]
    parts.extend(f"{cell_marker(cell)}\n{cell.source.strip()}\n" for cell in exported)
    text = "\n\n".join(parts)
    missing = undefined_names(text, filename)
    if missing:
        raise ExportError(f"{notebook_name}: its exported cells use {', '.join(missing)} without defining or "
                          f"importing them; export the cell that defines them, or import them in an exported cell")
    unused = unused_imports(exported, text, filename)
    if unused:
        raise ExportError(
            f"{notebook_name}: nothing in {filename} uses these imports of its exported cells; move each to a "
            f"cell without {DIRECTIVE!r} (a plain import cell below it), where the notebook's demonstrations "
            f"still have it:\n" + "\n".join(f"  {_where(cell)}, line {line}: {name}" for cell, line, name in unused))
    return text


def package_files(repo_root=REPO_ROOT):
    """{path relative to the repository: text} for every file of the package."""
    repo_root = Path(repo_root)
    notebooks = notebook_modules(repo_root)
    modules = "\n".join(f"    {module:13} {notebook}" for notebook, module in notebooks.items())
    files = {f"{PACKAGE}/__init__.py": (
        f"# Generated by {COMMAND}; edit the notebooks, then regenerate.\n"
        f'"""GPT-2 from scratch: what the notebooks define, one module per notebook.\n\n{modules}\n"""\n'
    )}
    for notebook, module in notebooks.items():
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
            with atomic_write_path(target) as partial:
                partial.write_text(text, encoding="utf-8")
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
    function or class may be written once (a script's `main` excepted: OWN_TO_EACH_FILE); so may an
    UPPER_CASE constant that an exported cell defines (one that no cell exports, such as each chapter's
    own BATCH_SIZE, is that chapter's setting).
    """
    repo_root = Path(repo_root)
    places, constants, exported_constants = {}, {}, set()
    sources = []
    for notebook in sorted(repo_root.glob(NOTEBOOKS)):
        for cell in notebook_cells(notebook):
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
    return {name: where for name, where in sorted(places.items()) if len(where) > 1 and name not in OWN_TO_EACH_FILE}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is out of date")
    arguments = parser.parse_args(argv)
    failed = False
    try:
        if arguments.check:
            stale = stale_files(REPO_ROOT)
            if stale:
                print(f"out of date: {', '.join(stale)}; run {COMMAND}", file=sys.stderr)
                failed = True
            else:
                print(f"{PACKAGE} is up to date with the notebooks")
        else:
            changed = write_package(REPO_ROOT)
            print(f"{PACKAGE}: " + (f"regenerated {', '.join(changed)}" if changed else "already up to date"))
        # Checked after the package is written, so a duplicate elsewhere does not hold up regenerating it.
        duplicates = duplicate_definitions(REPO_ROOT)
        if duplicates:
            raise ExportError("written in more than one place (keep one, import it elsewhere):\n" + "\n".join(
                f"  {name}: " + "; ".join(where) for name, where in duplicates.items()))
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
