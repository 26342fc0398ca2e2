"""03-05 run from top to bottom in the smoke profile with the Hugging Face Hub's format as the weights'
source (GPT2_WEIGHTS_SOURCE=huggingface), in a Python where TensorFlow cannot be imported.

nbval runs the same notebooks with the source GPT2_WEIGHTS_SOURCE names, OpenAI's format unless it is
set; together the two runs test both. A folder on PYTHONPATH holding a `tensorflow` package that raises ImportError stands in for a
machine without TensorFlow: it comes first on the path, so every process of the run (the kernel, and
any child it starts) finds it instead of the real one.
"""

import os
import shutil
import subprocess
import sys

import pytest

NOTEBOOKS = {  # notebook -> the stand-in folder it writes in the smoke profile
    "03_pretrained_weights.ipynb": "outputs/03_pretrained_weights-smoke/stand-in/huggingface/124M",
    "04_finetune_classify.ipynb": "outputs/04_finetune_classify-smoke/stand-in/huggingface/124M",
    "05_finetune_instruct.ipynb": "outputs/05_finetune_instruct-smoke/stand-in/huggingface/355M",
}


@pytest.fixture(scope="module")
def without_tensorflow(tmp_path_factory):
    """The environment of a smoke run with the Hub's format as source and TensorFlow impossible to import."""
    blocker = tmp_path_factory.mktemp("no-tensorflow")
    (blocker / "tensorflow").mkdir()
    (blocker / "tensorflow" / "__init__.py").write_text(
        'raise ImportError("TensorFlow is not installed here (blocked by tests/test_hub_source_notebooks.py)")\n')
    environment = dict(os.environ, GPT2_PROFILE="smoke", GPT2_WEIGHTS_SOURCE="huggingface",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")])))
    environment.pop("GPT2_INSTRUCT_SIZE", None)  # 05's default size, 355M, as NOTEBOOKS expects
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], env=environment, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked by tests/" in probe.stderr  # the block works
    return environment


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_notebook_runs_with_the_hubs_format_and_without_tensorflow(notebook, without_tensorflow, repo_root,
                                                                         tmp_path):
    stand_in = repo_root / NOTEBOOKS[notebook]
    shutil.rmtree(stand_in, ignore_errors=True)
    run = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                          "--ExecutePreprocessor.timeout=600", "--output-dir", str(tmp_path), notebook],
                         cwd=repo_root, env=without_tensorflow, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    # The stand-in was written in the Hub's format and read from there (nbconvert fails on any error).
    assert sorted(path.name for path in stand_in.iterdir()) == ["config.json", "manifest.json", "model.safetensors"]
