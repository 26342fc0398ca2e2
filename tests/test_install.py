"""The project is installed, not found through sys.path tricks: `pip install -r requirements.txt` installs it
(editable), so its packages import from any folder and the `gpt2` command exists."""

import importlib.metadata
import subprocess
import sys

DISTRIBUTION = "gpt2-from-scratch"


def test_the_project_is_installed_with_its_command():
    distribution = importlib.metadata.distribution(DISTRIBUTION)  # PackageNotFoundError: pip install -e .
    scripts = {entry.name: entry.value for entry in distribution.entry_points if entry.group == "console_scripts"}
    assert scripts == {"gpt2": "gpt2_support.cli:main"}


def test_its_packages_import_from_another_folder(tmp_path):
    # A fresh interpreter in an empty folder: only the installation can make these importable.
    code = ("import gpt2_from_scratch.weights, gpt2_support.cli, gpt_download; "
            "print(gpt2_from_scratch.weights.__file__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_file_changes_sys_path(repo_root):
    """Every entry point imports the installed packages; none puts a folder on sys.path by hand."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py", "*.ipynb"],
                            cwd=repo_root, capture_output=True, text=True, check=True).stdout.split()
    offenders = [name for name in listed if name != "tests/test_install.py" and (repo_root / name).is_file()
                 and "sys.path.insert" in (repo_root / name).read_text(encoding="utf-8")]
    assert offenders == [], f"these files change sys.path; import the installed package instead: {offenders}"
