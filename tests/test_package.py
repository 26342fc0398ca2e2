"""The package gpt2_from_scratch is generated from the notebooks, and each definition is written once.

tools/export_package.py copies the cells marked `#| export` into the module each notebook declares
(`#| default_exp <module>`). These tests regenerate the package and compare it with the committed one
(so a notebook edit without regenerating cannot land), refuse a function or class written in two
places (the recaps this replaced), and check the exporter's own rules on small synthetic notebooks.
"""

import importlib
import re
import subprocess
import sys
import textwrap

import nbformat
import pytest

import tools.export_package as export

# The synthetic repositories' notebooks and the modules they declare, named as the series' are.
MODULES = {"01_architecture.ipynb": "architecture", "02_pretraining.ipynb": "pretraining",
           "03_pretrained_weights.ipynb": "weights", "04_finetune_classify.ipynb": "classify",
           "05_finetune_instruct.ipynb": "instruct"}
NOTEBOOKS = list(MODULES)


def write_notebook(path, *cells, module="declared"):
    """A notebook with a heading, these code cells (strings), and a last cell `#| default_exp <module>`.

    module: "declared" names the module MODULES gives the notebook; None leaves the declaration out. The
    declaration comes last so that the other cells keep their numbers (1, 2, ...).
    """
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_markdown_cell("# A synthetic chapter\n## 1. The only section"))
    notebook.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    module = MODULES[path.name] if module == "declared" else module
    if module is not None:
        notebook.cells.append(nbformat.v4.new_code_cell(f"#| default_exp {module}"))
    nbformat.write(notebook, path)


@pytest.fixture
def tiny_repo(tmp_path):
    """A repository with five one-cell notebooks and their generated package."""
    for index, notebook in enumerate(NOTEBOOKS):
        write_notebook(tmp_path / notebook, f"#| export\ndef helper_{index}(x):\n    return x + {index}",
                       f"print(helper_{index}(1))")
    export.write_package(tmp_path)
    return tmp_path


# --- the repository ---------------------------------------------------------------------------------

def test_the_committed_package_is_what_the_notebooks_generate(repo_root):
    stale = export.stale_files(repo_root)
    assert not stale, f"{stale} differ from what the notebooks generate: run python tools/export_package.py"


def test_no_function_or_class_is_written_in_two_places(repo_root):
    duplicates = export.duplicate_definitions(repo_root)
    assert not duplicates, "written more than once (import it instead): " + "; ".join(
        f"{name} in {where}" for name, where in duplicates.items())


def test_each_notebook_declares_the_module_named_after_it(repo_root):
    assert export.notebook_modules(repo_root) == MODULES


def test_modules_import_only_earlier_chapters_and_never_tensorflow(repo_root):
    modules = export.notebook_modules(repo_root)
    order = list(modules.values())
    for notebook, module in modules.items():
        text = (repo_root / export.PACKAGE / f"{module}.py").read_text(encoding="utf-8")
        assert text.startswith(f"# Generated from {notebook}; edit the notebook, then regenerate")
        imported = [line.split()[1].split(".")[1] for line in text.splitlines()
                    if line.startswith(f"from {export.PACKAGE}.")]
        assert all(order.index(other) < order.index(module) for other in imported), (module, imported)
    script = "import sys\nimport gpt2_from_scratch.instruct\nassert 'tensorflow' not in sys.modules\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def section_numbers(notebook_path):
    """The numbers of a notebook's section headings: "## 5. The GPT model" -> "5", "### 4.5 ..." -> "4.5"."""
    cells = nbformat.read(notebook_path, as_version=4).cells
    headings = [line for cell in cells if cell.cell_type == "markdown" for line in cell.source.splitlines()
                if line.startswith("#")]
    return {match.group(1) for line in headings if (match := re.match(r"#+\s+(\d+(?:\.\d+)*)\.?\s", line))}


def test_each_import_from_the_package_points_to_a_section_that_exists(repo_root):
    checked = 0
    for position, notebook in enumerate(NOTEBOOKS[1:], start=1):
        for cell in export.notebook_cells(repo_root / notebook):
            for line in cell.source.splitlines():
                if not line.strip().startswith(f"from {export.PACKAGE}."):
                    continue
                where = f"{notebook}, cell {cell.index}: {line.strip()!r}"
                pointer = re.search(r"  # (\d\d|this chapter), sections? ([\d.]+)(?: (?:and|to) ([\d.]+))?", line)
                assert pointer, f"{where} needs a pointer such as '# 01, section 5'"
                source = notebook if pointer.group(1) == "this chapter" else next(
                    name for name in NOTEBOOKS if name.startswith(pointer.group(1)))
                assert NOTEBOOKS.index(source) <= position, f"{where} points to a later chapter"
                for number in filter(None, pointer.group(2, 3)):
                    assert number in section_numbers(repo_root / source), f"{where}: {source} has no section {number}"
                checked += 1
    assert checked >= 20


def test_the_check_command_passes_on_the_repository(repo_root):
    result = subprocess.run([sys.executable, "tools/export_package.py", "--check"], cwd=repo_root,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --- the exporter's rules ---------------------------------------------------------------------------

def test_a_module_holds_the_exported_cells_in_order_with_their_section(tiny_repo):
    text = (tiny_repo / export.PACKAGE / "architecture.py").read_text()
    assert text.splitlines()[0] == ("# Generated from 01_architecture.ipynb; edit the notebook, then regenerate: "
                                    "python tools/export_package.py")
    assert '# 01_architecture.ipynb, cell 1 (section "1. The only section")\ndef helper_0(x):' in text
    assert "print(" not in text and "#| export" not in text
    assert export.stale_files(tiny_repo) == []


def test_a_notebook_edit_without_regenerating_is_stale(tiny_repo):
    write_notebook(tiny_repo / "02_pretraining.ipynb", "#| export\ndef helper_1(x):\n    return x + 100")
    assert export.stale_files(tiny_repo) == [f"{export.PACKAGE}/pretraining.py"]
    export.write_package(tiny_repo)
    assert export.stale_files(tiny_repo) == []


def test_a_hand_edited_missing_or_extra_module_is_stale(tiny_repo):
    package = tiny_repo / export.PACKAGE
    (package / "weights.py").write_text((package / "weights.py").read_text() + "\n# a hand edit\n")
    (package / "classify.py").unlink()
    (package / "copied.py").write_text("def helper_0(x):\n    return x\n")
    assert export.stale_files(tiny_repo) == [f"{export.PACKAGE}/classify.py", f"{export.PACKAGE}/copied.py",
                                             f"{export.PACKAGE}/weights.py"]
    export.write_package(tiny_repo)
    assert export.stale_files(tiny_repo) == [] and not (package / "copied.py").exists()


def test_the_check_command_fails_on_a_stale_module_and_regenerating_fixes_it(tiny_repo, monkeypatch, capsys):
    monkeypatch.setattr(export, "REPO_ROOT", tiny_repo)
    assert export.main(["--check"]) == 0
    write_notebook(tiny_repo / "02_pretraining.ipynb", "#| export\ndef helper_1(x):\n    return x + 100")
    assert export.main(["--check"]) == 1
    assert "out of date: gpt2_from_scratch/pretraining.py; run python tools/export_package.py" in capsys.readouterr().err
    assert export.main([]) == 0 and export.main(["--check"]) == 0


def test_an_exported_constant_restated_elsewhere_is_a_duplicate_and_a_chapter_setting_is_not(tiny_repo):
    write_notebook(tiny_repo / "01_architecture.ipynb", "#| export\nLABELS = ('ham', 'spam')", "BATCH_SIZE = 8")
    write_notebook(tiny_repo / "04_finetune_classify.ipynb", "LABELS = ('ham', 'spam')\nBATCH_SIZE = 2")
    assert list(export.duplicate_definitions(tiny_repo)) == ["LABELS"]


def test_a_cell_that_cannot_be_parsed_is_named(tiny_repo):
    write_notebook(tiny_repo / "03_pretrained_weights.ipynb", "files = !ls")
    with pytest.raises(export.ExportError, match=r"03_pretrained_weights.ipynb, cell 1 .*cannot be parsed"):
        export.duplicate_definitions(tiny_repo)


def test_a_definition_written_twice_is_found_wherever_it_is(tiny_repo):
    write_notebook(tiny_repo / "04_finetune_classify.ipynb", "def helper_0(x):\n    return x  # a recap of 01's")
    (tiny_repo / "gpt_download.py").write_text("class Helper:\n    pass\n\n\ndef helper_4(x):\n    return x\n")
    write_notebook(tiny_repo / "05_finetune_instruct.ipynb", "class Helper:\n    pass")
    duplicates = export.duplicate_definitions(tiny_repo)
    assert sorted(duplicates) == ["Helper", "helper_0"]
    assert duplicates["helper_0"] == ["01_architecture.ipynb, cell 1 ('1. The only section'), line 2",
                                      "04_finetune_classify.ipynb, cell 1 ('1. The only section'), line 1"]
    assert duplicates["Helper"][0] == "05_finetune_instruct.ipynb, cell 1 ('1. The only section'), line 1"


@pytest.mark.parametrize("cell, message", [
    ("#| export\nimport math\nprint(math.pi)", r"cell 1 \('1. The only section'\), line 3: .* not `print\(math.pi\)`"),
    ("#| export\nfor size in (1, 2):\n    SIZE = size", r"line 2: .* not `for size in \(1, 2\):`"),
    ("#| export\nwidth = 3", r"not `width = 3`"),
    ("#|export\nimport math\nCONFIG.width = 3", r"not `CONFIG.width = 3`"),
    ("#| export\nfrom math import *", r"`import \*` hides"),
    ("#| export\ndef area(width):\n    return width * HEIGHT", r"use HEIGHT without defining or importing"),
])
def test_an_exported_cell_that_would_run_code_or_use_an_unknown_name_is_refused(tmp_path, cell, message):
    write_notebook(tmp_path / "01_architecture.ipynb", cell)
    with pytest.raises(export.ExportError, match=message):
        export.module_text(tmp_path / "01_architecture.ipynb", "architecture")


def test_undefined_names_sees_every_scope():
    source = textwrap.dedent("""
        import math
        LIMIT = 3
        class Box:
            side = LIMIT
            def volume(self):
                return [math.pow(self.side, power) for power in range(EXPONENT)] + helper()
        def helper():
            return list(map(str, missing_global))
    """)
    assert export.undefined_names(source, "box.py") == ["EXPONENT", "missing_global"]


# --- which module a notebook's cells go to: `#| default_exp` -----------------------------------------

def test_a_notebook_of_the_series_without_a_module_declaration_is_refused(tiny_repo, monkeypatch, capsys):
    write_notebook(tiny_repo / "03_pretrained_weights.ipynb", "#| export\ndef helper_2(x):\n    return x", module=None)
    with pytest.raises(export.ExportError, match=r"^03_pretrained_weights.ipynb declares no module: .* a code cell "
                                                 r"whose first line is `#\| default_exp <module>`"):
        export.package_files(tiny_repo)
    monkeypatch.setattr(export, "REPO_ROOT", tiny_repo)
    assert export.main(["--check"]) == 1
    assert "03_pretrained_weights.ipynb declares no module" in capsys.readouterr().err


def test_two_notebooks_declaring_one_module_are_refused(tiny_repo):
    write_notebook(tiny_repo / "04_finetune_classify.ipynb", "#| export\ndef helper_3(x):\n    return x",
                   module="weights")
    with pytest.raises(export.ExportError, match=r"^03_pretrained_weights.ipynb and 04_finetune_classify.ipynb both "
                                                 r"declare `#\| default_exp weights`; give each notebook a module"):
        export.notebook_modules(tiny_repo)


@pytest.mark.parametrize("cells, message", [
    (["#| default_exp weights", "#| default_exp loading"], r"03_pretrained_weights.ipynb, cells 1 and 2: more than one"),
    (["#| default_exp my-weights"], r"cell 1: `#\| default_exp my-weights` is not a module name that can be imported"),
    (["#| default_exp class"], r"`#\| default_exp class` is not a module name"),
    (["#| default_exp"], r"`#\| default_exp ` is not a module name"),
])
def test_a_declaration_that_names_no_single_importable_module_is_refused(tiny_repo, cells, message):
    write_notebook(tiny_repo / "03_pretrained_weights.ipynb", *cells, module=None)
    with pytest.raises(export.ExportError, match=message):
        export.notebook_modules(tiny_repo)


def test_the_notebooks_are_found_by_their_names_and_any_module_name_serves(tiny_repo):
    write_notebook(tiny_repo / "06_extra_chapter.ipynb", "#| export\nEXTRA = 6", module="extra")
    write_notebook(tiny_repo / "scratch.ipynb", "#| export\nimport this_is_not_exported", module=None)
    assert list(export.notebook_modules(tiny_repo).items())[-1] == ("06_extra_chapter.ipynb", "extra")
    files = export.package_files(tiny_repo)
    assert "EXTRA = 6" in files[f"{export.PACKAGE}/extra.py"]
    assert "    extra         06_extra_chapter.ipynb\n" in files[f"{export.PACKAGE}/__init__.py"]
    assert not any("this_is_not_exported" in text for text in files.values())


# --- a module holds what its definitions use, and says what it defines -------------------------------

def test_an_exported_import_nothing_in_the_module_uses_is_refused_with_the_fix(tmp_path):
    write_notebook(tmp_path / "01_architecture.ipynb",
                   "#| export\nimport math\nimport os.path\nimport time\nfrom json import dumps, loads  # a note\n\n"
                   "def now():\n    return time.time(), loads('1')",
                   "print(math.pi, os.path.sep, dumps(1))")
    with pytest.raises(export.ExportError) as refused:
        export.module_text(tmp_path / "01_architecture.ipynb", "architecture")
    assert str(refused.value) == (
        "01_architecture.ipynb: nothing in gpt2_from_scratch/architecture.py uses these imports of its exported "
        "cells; move each to a cell without '#| export' (a plain import cell below it), where the notebook's "
        "demonstrations still have it:\n"
        "  01_architecture.ipynb, cell 1 ('1. The only section'), line 2: math\n"
        "  01_architecture.ipynb, cell 1 ('1. The only section'), line 3: os\n"
        "  01_architecture.ipynb, cell 1 ('1. The only section'), line 5: dumps")


def test_an_import_used_in_any_scope_of_the_module_is_kept(tmp_path):
    # each import is used in one place only: a decorator, a default, a class body, an annotation, a nested function
    write_notebook(tmp_path / "01_architecture.ipynb",
                   "#| export\nimport functools\nimport math\nimport os\nimport typing\nimport json\n"
                   "from dataclasses import dataclass, field",
                   "#| export\n@dataclass\nclass Box:\n    sides: typing.List[int] = field(default_factory=list)\n"
                   "    separator = os.sep\n\n\n@functools.cache\ndef area(width=math.pi):\n"
                   "    def as_text():\n        return json.dumps(width)\n    return as_text()")
    text = export.module_text(tmp_path / "01_architecture.ipynb", "architecture")
    assert "import functools" in text and "from dataclasses import dataclass, field" in text


def test_all_lists_the_functions_classes_and_constants_in_notebook_order(tmp_path):
    write_notebook(tmp_path / "01_architecture.ipynb",
                   "#| export\nimport math\nfrom pathlib import Path\n\nLIMIT = 3\n_CACHE = {}\n\n\n"
                   "def area(width):\n    return math.pi * width * LIMIT\n\n\ndef _private():\n    return Path('.'), _CACHE",
                   "#| export\nclass Box:\n    pass\n\n\nWIDTH, HEIGHT = 1, 2")
    text = export.module_text(tmp_path / "01_architecture.ipynb", "architecture")
    namespace = {}
    exec(compile(text, "architecture.py", "exec"), namespace)
    assert namespace["__all__"] == ["LIMIT", "area", "Box", "WIDTH", "HEIGHT"]


def test_each_module_of_the_repository_lists_its_own_definitions_in_all(repo_root):
    for module in export.notebook_modules(repo_root).values():
        definitions = importlib.import_module(f"{export.PACKAGE}.{module}")
        assert definitions.__all__, module
        for name in definitions.__all__:
            value = getattr(definitions, name)  # AttributeError: __all__ names something the module lacks
            assert getattr(value, "__module__", definitions.__name__) == definitions.__name__, (module, name)


# --- duplicates: every hand-written file is read ---------------------------------------------------

@pytest.mark.parametrize("path", ["gpt_download.py", "gpt2_support/files.py", "benchmarks/bench.py",
                                  "figures/make_figures.py", "exercises/checks.py"])
def test_a_hand_written_file_that_restates_a_notebooks_definition_is_a_duplicate(tiny_repo, path):
    (tiny_repo / path).parent.mkdir(exist_ok=True)
    (tiny_repo / path).write_text("def helper_0(x):\n    return x\n")
    assert export.duplicate_definitions(tiny_repo) == {
        "helper_0": ["01_architecture.ipynb, cell 1 ('1. The only section'), line 2", f"{path}, line 1"]}


def test_each_script_may_have_its_own_main(tiny_repo):
    for path in ("benchmarks/bench.py", "figures/make_figures.py"):
        (tiny_repo / path).parent.mkdir(exist_ok=True)
        (tiny_repo / path).write_text("def main():\n    return 0\n")
    assert export.duplicate_definitions(tiny_repo) == {}


def test_a_duplicate_does_not_stop_the_package_being_regenerated_but_fails_the_command(tiny_repo, monkeypatch,
                                                                                        capsys):
    monkeypatch.setattr(export, "REPO_ROOT", tiny_repo)
    (tiny_repo / "gpt_download.py").write_text("def helper_1(x):\n    return x\n")
    write_notebook(tiny_repo / "02_pretraining.ipynb", "#| export\ndef helper_1(x):\n    return x + 100")
    assert export.main([]) == 1
    assert "helper_1: 02_pretraining.ipynb, cell 1" in capsys.readouterr().err
    assert export.stale_files(tiny_repo) == []
    assert export.main(["--check"]) == 1
