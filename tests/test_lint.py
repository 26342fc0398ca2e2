"""The linter passes: ruff, with pyflakes' rules at least, over the repository's Python files and notebooks.

Its settings are in pyproject.toml ([tool.ruff]). Pyflakes' rules (F) find unused imports, names used
but never defined, redefinitions and the like; the run below adds them even if the settings lose them.
To see the findings yourself: `python -m ruff check .`; `python -m ruff check --fix .` removes unused
imports (in a notebook, mind that a later cell may still need one).
"""

import importlib.util
import shutil
import subprocess
import sys

import nbformat
import pytest


def ruff_check(folder):
    """(exit status, findings) of `ruff check` in `folder`, with pyflakes' rules added to its settings."""
    if importlib.util.find_spec("ruff") is None:
        pytest.fail("ruff is not installed; the test extra brings it: pip install -e .[test]")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--extend-select", "F",
                             "--output-format", "concise", "."], cwd=folder, capture_output=True, text=True,
                            timeout=300)
    return result.returncode, (result.stdout + result.stderr).strip()


def test_ruff_finds_nothing_in_the_repository(repo_root):
    status, findings = ruff_check(repo_root)
    assert status == 0, (f"ruff's findings (fix each; a generated gpt2_from_scratch/*.py is fixed in its notebook, "
                         f"then python tools/export_package.py):\n{findings}")


def test_the_linter_reports_an_unused_import_in_a_module_and_in_a_notebook(repo_root, tmp_path):
    # The repository's settings, on two small files with one finding each: the run above could not miss them.
    shutil.copy(repo_root / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "module.py").write_text("import os\n\n\ndef here():\n    return undefined_name\n")
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("import json"))
    nbformat.write(notebook, tmp_path / "01_chapter.ipynb")
    status, findings = ruff_check(tmp_path)
    assert status == 1
    assert "module.py:1:8: F401 [*] `os` imported but unused" in findings
    assert "module.py:5:12: F821 Undefined name `undefined_name`" in findings
    assert "01_chapter.ipynb:cell 1:1:8: F401 [*] `json` imported but unused" in findings
