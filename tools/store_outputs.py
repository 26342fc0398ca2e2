"""Store the outputs of 03-05 that do not need OpenAI's weights, as a reader's full-profile run prints them.

    python -m tools.store_outputs 04_finetune_classify.ipynb [05_finetune_instruct.ipynb ...]

OpenAI's weights cannot be downloaded where this repository is built, so 03-05 cannot be executed as a
reader executes them. Most of their cells do not depend on the weights, though: the data, the batches,
the shapes and parameter counts, the checks of refusals, the exercises. Two cell tags (cell metadata
"tags", visible in Jupyter under View > Cell Toolbar > Tags) say which ones do:

- `openai-weights`: the cell's output depends on the weights (values loaded, anything trained or
  generated from them, their timings, a download). It is committed without output; the markdown
  beside it says what a reader will see.
- `skip-when-storing`: too slow to run here at full size (a training loop, a whole test set's
  generations), or only meaningful after such a cell. Always tagged `openai-weights` as well.

This script writes a random stand-in of the notebook's real model size in OpenAI's format (the one
benchmarks/full_size_standin.py times, from 03's `write_gpt2_checkpoint`; written once into
outputs/store_outputs/models/ and reused), executes the
notebook in a scratch folder in the full profile, cell by cell, leaving out the `skip-when-storing`
cells, and then stores into the committed notebook the outputs and execution counts of every code cell
not tagged `openai-weights` (streams coalesced, as for 01 and 02) and clears the tagged cells'. Nothing
is written if a cell fails or if a stored output would show a path of this machine.
tests/test_stored_outputs.py checks the result: tags consistent, tagged cells empty, every other code cell
executed.
"""

import argparse
import copy
import fcntl
import os
import shutil
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

if not __package__:  # run as a file: then benchmarks/ is not importable
    sys.exit("run this from the repository's top folder as `python -m tools.store_outputs NOTEBOOK.ipynb ...`")

from benchmarks.full_size_standin import write_stand_in  # noqa: E402
from gpt2_support.files import atomic_write_path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK_DIR = REPO_ROOT / "outputs" / "store_outputs"
# The model size each notebook's full profile loads (05: GPT2_INSTRUCT_SIZE's default).
MODEL_SIZES = {"03_pretrained_weights": "124M", "04_finetune_classify": "124M", "05_finetune_instruct": "355M"}
# What the notebooks read from the repository; the scratch folder links to these and holds everything else.
SHARED = ("data", "exercises", "figures", "gpt_download.py", "gpt2_from_scratch", "gpt2_support")
NEEDS_WEIGHTS, SKIP = "openai-weights", "skip-when-storing"


def tags(cell):
    return set(cell.get("metadata", {}).get("tags", []))


def stand_in_folder(size):
    """A random GPT-2 of this size in OpenAI's format, under WORK_DIR/models/<size>: the benchmark's stand-in,
    written once and reused (the lock: two notebooks of one size, stored at once, write it once)."""
    models_dir = WORK_DIR / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return write_stand_in(size, models_dir)


def execute_without_skipped_cells(notebook, name, size, timeout):
    """Run the notebook's cells in order in a scratch folder, full profile, skipping SKIP-tagged cells."""
    stand_in = stand_in_folder(size)
    scratch = WORK_DIR / f"work-{name}"
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "models" / "gpt2").mkdir(parents=True)
    for entry in SHARED:
        (scratch / entry).symlink_to(REPO_ROOT / entry)
    (scratch / "models" / "gpt2" / size).symlink_to(stand_in)
    # A relative models folder, so that no absolute path of this machine can reach an output.
    # The kernel's own environment (this process's stays as it is): the full profile, without the settings
    # that would make it a partial run or another size.
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("GPT2_DATA_FRACTION", "GPT2_INSTRUCT_SIZE")}
    environment.update(GPT2_PROFILE="full", GPT2_WEIGHTS_SOURCE="openai", GPT2_MODELS_DIR="models/gpt2")
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(scratch)}})
    try:
        with client.setup_kernel(env=environment):
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type != "code" or SKIP in tags(cell):
                    continue
                print(f"  cell {index:3d}: {cell.source.splitlines()[0][:70] if cell.source else ''}", flush=True)
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as error:
                    raise SystemExit(f"cell {index} failed in the full profile on the random stand-in (nothing was "
                                     f"written): {error.ename}: {error.evalue}\nA cell that needs OpenAI's weights to "
                                     f"pass (a check of what they predict, say) is tagged {SKIP!r}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def output_text(cell):
    parts = []
    for output in cell.get("outputs", []):
        parts.append(str(output.get("text", "")))
        parts += [str(value) for key, value in output.get("data", {}).items() if key.startswith("text/")]
        parts += output.get("traceback", [])
    return "\n".join(parts)


def store_outputs(path, timeout=3600):
    """Execute one of 03-05 as the module docstring says and store its weight-independent outputs."""
    path = Path(path)
    if path.stem not in MODEL_SIZES:
        raise SystemExit(f"{path}: not one of {', '.join(name + '.ipynb' for name in MODEL_SIZES)} "
                         "(01 and 02 are stored by executing them whole: see CONTRIBUTING.md)")
    committed = nbformat.read(path, as_version=4)
    for index, cell in enumerate(committed.cells):
        if SKIP in tags(cell) and NEEDS_WEIGHTS not in tags(cell):
            raise SystemExit(f"{path}, cell {index}: tagged {SKIP!r} but not {NEEDS_WEIGHTS!r}; a skipped cell has "
                             f"no output to store, so tag it {NEEDS_WEIGHTS!r} too")
    executed = copy.deepcopy(committed)  # the committed notebook changes only at the end
    execute_without_skipped_cells(executed, path.stem, MODEL_SIZES[path.stem], timeout)
    machine_paths = [str(REPO_ROOT), str(WORK_DIR), str(Path.home())]
    for index, (cell, run) in enumerate(zip(committed.cells, executed.cells)):
        if cell.cell_type != "code":
            continue
        if NEEDS_WEIGHTS in tags(cell):
            cell.outputs, cell.execution_count = [], None
            continue
        cell.outputs, cell.execution_count = run.outputs, run.execution_count
        found = [machine_path for machine_path in machine_paths if machine_path in output_text(cell)]
        if found:
            raise SystemExit(f"{path}, cell {index}: its output shows {found[0]}, a path of this machine; print "
                             "paths relative to the repository (nothing was written)")
    committed, _ = CoalesceStreamsPreprocessor(enabled=True).preprocess(committed, {})
    with atomic_write_path(path) as partial:
        nbformat.write(committed, partial)
    stored = sum(bool(cell.outputs) for cell in committed.cells if cell.cell_type == "code")
    code_cells = sum(cell.cell_type == "code" for cell in committed.cells)
    print(f"{path}: {stored} of {code_cells} code cells store an output")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.store_outputs", description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+", help="03_pretrained_weights.ipynb, 04_… or 05_…")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run (default 3600)")
    arguments = parser.parse_args(argv)
    os.chdir(REPO_ROOT)
    for notebook in arguments.notebooks:
        store_outputs(Path(notebook).name, arguments.timeout)


if __name__ == "__main__":
    sys.exit(main())
