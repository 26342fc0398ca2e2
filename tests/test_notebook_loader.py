"""The notebook loader, and the recap rule: a definition restated in a later notebook is identical."""

import nbformat
import pytest
from notebook_loader import load_definitions, notebook_definitions, recap_mismatches

HELPER = '''def area(width, height):
    """Area of a rectangle."""
    return width * height
'''


def write_notebook(path, *cells):
    """Write a notebook whose code cells are `cells` (strings, or (source, tags) pairs)."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_markdown_cell("# A synthetic notebook"))
    for cell in cells:
        source, tags = cell if isinstance(cell, tuple) else (cell, [])
        notebook.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))
    nbformat.write(notebook, path)
    return path


def test_loads_definitions_and_skips_everything_else(tmp_path):
    path = write_notebook(
        tmp_path / "a.ipynb",
        "%matplotlib inline\nimport math\nfrom dataclasses import dataclass",
        "SCALE = 3\nLIMITS = (LOW, HIGH) = (1, 9)\nscratch = 1 / 0",
        HELPER + 'print("printing is skipped")\nraise RuntimeError("statements are not run")',
        "@dataclass\nclass Box:\n    side: float = SCALE\n\n    def volume(self):\n        return math.pow(self.side, 3)",
        "!echo shell lines are skipped\nfor i in range(3):\n    SCALE = 100",
    )
    nb = load_definitions(path)
    assert nb.area(2, 5) == 10
    assert nb.Box().volume() == 27  # the decorator ran and SCALE kept its constant value
    assert (nb.LOW, nb.HIGH) == (1, 9)
    assert not hasattr(nb, "scratch") and not hasattr(nb, "i")


def test_a_constant_that_needs_a_skipped_statement_names_its_cell(tmp_path):
    path = write_notebook(tmp_path / "a.ipynb", "width = 4", "AREA = width * 2")
    with pytest.raises(RuntimeError, match=r"code cell 2"):
        load_definitions(path)


def test_tags_select_cells(tmp_path):
    path = write_notebook(tmp_path / "a.ipynb", (HELPER, ["definitions"]), "def other():\n    return 1")
    nb = load_definitions(path, tags=["definitions"])
    assert hasattr(nb, "area") and not hasattr(nb, "other")


def test_definition_source_includes_decorators(tmp_path):
    path = write_notebook(tmp_path / "a.ipynb", "import functools\n\n@functools.cache\ndef f():\n    return 1\n\nx = f()")
    (definition,) = notebook_definitions(path)["f"]
    assert definition.source == "@functools.cache\ndef f():\n    return 1"
    assert definition.cell_index == 1


def test_identical_recaps_pass(tmp_path):
    first = write_notebook(tmp_path / "01.ipynb", HELPER)
    later = write_notebook(tmp_path / "02.ipynb", "# Recap\n" + HELPER, "def new_in_02():\n    return 2")
    assert recap_mismatches([first, later]) == []


def test_a_recap_that_differs_is_reported(tmp_path):
    first = write_notebook(tmp_path / "01.ipynb", HELPER)
    later = write_notebook(tmp_path / "02.ipynb", HELPER.replace("width * height", "height * width"))
    [(name, definitions)] = recap_mismatches([first, later])
    assert name == "area"
    assert [d.notebook for d in definitions] == ["01.ipynb", "02.ipynb"]


def test_a_changed_docstring_or_decorator_counts_as_a_difference(tmp_path):
    first = write_notebook(tmp_path / "01.ipynb", HELPER, "import functools\n@functools.cache\ndef g():\n    return 1")
    later = write_notebook(tmp_path / "02.ipynb", HELPER.replace("Area", "The area"),
                           "import functools\ndef g():\n    return 1")
    assert [name for name, _ in recap_mismatches([first, later])] == ["area", "g"]


def test_a_different_redefinition_inside_one_notebook_is_reported(tmp_path):
    path = write_notebook(tmp_path / "01.ipynb", HELPER, HELPER.replace("width * height", "0"))
    assert [name for name, _ in recap_mismatches([path])] == ["area"]


def test_the_notebooks_recaps_are_verbatim(repo_root):
    notebooks = sorted(repo_root.glob("0[1-5]_*.ipynb"))
    assert notebooks, "no notebooks found"
    mismatches = recap_mismatches(notebooks)
    assert not mismatches, "definitions differ between notebooks: " + ", ".join(
        f"{name} in {[f'{d.notebook} cell {d.cell_index}' for d in defs]}" for name, defs in mismatches
    )
