"""The notebooks' stored outputs. 01 and 02 are committed executed in the full profile; 03-05 with the
output of every cell that does not need OpenAI's weights (tools/store_outputs.py, which reads two cell tags).
Everywhere, a progress bar ends as one line, not as a wall of carriage-return fragments."""

import ast
import json
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]


NOTEBOOKS = ["01_architecture.ipynb", "02_pretraining.ipynb", "03_pretrained_weights.ipynb",
             "04_finetune_classify.ipynb", "05_finetune_instruct.ipynb"]
NEEDS_WEIGHTS, SKIP = "openai-weights", "skip-when-storing"  # the tags tools/store_outputs.py reads


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_cell_keeps_at_most_one_progress_stream_without_carriage_returns(notebook):
    cells = json.loads((REPO / notebook).read_text(encoding="utf-8"))["cells"]
    for index, cell in enumerate(cells):
        for name in ("stdout", "stderr"):
            streams = [output for output in cell.get("outputs", []) if output["output_type"] == "stream"
                       and output["name"] == name]
            text = "".join("".join(output["text"]) for output in streams)
            assert len(streams) <= 1, f"{notebook}, cell {index}: {len(streams)} separate {name} outputs"
            assert "\r" not in text, f"{notebook}, cell {index}: progress-bar fragments in {name} ({text.count(chr(13))})"


@pytest.mark.parametrize("notebook", NOTEBOOKS[2:])
def test_03_to_05_store_every_cell_that_does_not_need_openais_weights(notebook):
    """A cell tagged openai-weights keeps no output (the markdown beside it says what a reader sees); every other
    code cell was executed by tools/store_outputs.py (a new or changed cell without an execution count means the
    outputs were not stored again); a skipped cell is one that needs the weights."""
    cells = json.loads((REPO / notebook).read_text(encoding="utf-8"))["cells"]
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        where = f"{notebook}, cell {index} ({cell['source'][0].strip() if cell['source'] else 'empty'})"
        if SKIP in tags:
            assert NEEDS_WEIGHTS in tags, f"{where}: tagged {SKIP} but not {NEEDS_WEIGHTS}"
        if NEEDS_WEIGHTS in tags:
            assert not cell["outputs"] and cell["execution_count"] is None, \
                f"{where}: needs OpenAI's weights, so its output cannot be ours: store none"
        else:
            assert cell["execution_count"] is not None, \
                f"{where}: not executed; run python -m tools.store_outputs {notebook}"
    assert any(NEEDS_WEIGHTS in cell.get("metadata", {}).get("tags", []) for cell in cells), \
        f"{notebook}: no cell is tagged {NEEDS_WEIGHTS}, yet the notebook loads OpenAI's weights"


def test_store_outputs_refuses_a_skipped_cell_not_tagged_as_needing_the_weights(tmp_path):
    from tools.store_outputs import store_outputs

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)", metadata={"tags": [SKIP]})])
    path = tmp_path / "04_finetune_classify.ipynb"
    nbformat.write(notebook, path)
    with pytest.raises(SystemExit, match="tagged 'skip-when-storing' but not 'openai-weights'"):
        store_outputs(path)
    assert nbformat.read(path, as_version=4) == notebook  # nothing written


def names_bound_and_read(source):
    """(names a cell's code binds, names it reads), from its syntax."""
    tree = ast.parse(source)
    bound = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    bound |= {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    bound |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}  # a function's parameters
    bound |= {(alias.asname or alias.name).split(".")[0] for node in ast.walk(tree)
              if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return bound, read


# What each notebook's skipped cells define and no cell run when storing defines again: shows that the check
# below sees what it is about.
ONLY_SKIPPED_DEFINE = {"03_pretrained_weights.ipynb": {"val_loss"},
                       "04_finetune_classify.ipynb": {"test_predictions", "lora_model"},
                       "05_finetune_instruct.ipynb": {"scores_before", "history", "responses_after"}}


@pytest.mark.parametrize("notebook", NOTEBOOKS[2:])
def test_cells_run_when_outputs_are_stored_do_not_need_the_skipped_ones(notebook):
    """tools/store_outputs.py runs the notebook without its skip-when-storing cells: no cell it runs may read a
    name that only skipped cells define (it would fail there, after minutes of running)."""
    cells = [cell for cell in nbformat.read(REPO / notebook, as_version=4).cells if cell.cell_type == "code"]
    only_skipped, defined = set(), set()
    for index, cell in enumerate(cells):
        bound, read = names_bound_and_read(cell.source)
        if SKIP in cell.metadata.get("tags", []):
            only_skipped |= bound - defined
            continue
        missing = (read - bound) & only_skipped
        assert not missing, f"{notebook}, code cell {index} reads {sorted(missing)}, which only skipped cells define"
        defined |= bound
        only_skipped -= bound
    assert ONLY_SKIPPED_DEFINE[notebook] <= only_skipped
