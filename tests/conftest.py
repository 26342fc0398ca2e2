"""Fixtures shared by the unit tests: the repository root and each notebook's definitions."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # make notebook_loader importable
sys.path.insert(0, str(REPO_ROOT))  # and gpt_download, which notebooks 03-05 import

from notebook_loader import load_definitions  # noqa: E402


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


def _definitions_of(notebook):
    """A session fixture with the definitions of one notebook (classes, functions, imports, constants)."""

    @pytest.fixture(scope="session")
    def definitions():
        return load_definitions(REPO_ROOT / notebook)

    definitions.__doc__ = f"The definitions of {notebook}."
    return definitions


nb01 = _definitions_of("01_architecture.ipynb")
nb02 = _definitions_of("02_pretraining.ipynb")
nb03 = _definitions_of("03_pretrained_weights.ipynb")
nb04 = _definitions_of("04_finetune_classify.ipynb")
nb05 = _definitions_of("05_finetune_instruct.ipynb")
