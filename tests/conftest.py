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


@pytest.fixture(scope="session")
def nb01():
    """The definitions of 01_architecture.ipynb (classes, functions, imports, constants)."""
    return load_definitions(REPO_ROOT / "01_architecture.ipynb")


@pytest.fixture(scope="session")
def nb02():
    """The definitions of 02_pretraining.ipynb."""
    return load_definitions(REPO_ROOT / "02_pretraining.ipynb")


@pytest.fixture(scope="session")
def nb03():
    """The definitions of 03_pretrained_weights.ipynb."""
    return load_definitions(REPO_ROOT / "03_pretrained_weights.ipynb")


@pytest.fixture(scope="session")
def nb04():
    """The definitions of 04_finetune_classify.ipynb."""
    return load_definitions(REPO_ROOT / "04_finetune_classify.ipynb")


@pytest.fixture(scope="session")
def nb05():
    """The definitions of 05_finetune_instruct.ipynb."""
    return load_definitions(REPO_ROOT / "05_finetune_instruct.ipynb")
