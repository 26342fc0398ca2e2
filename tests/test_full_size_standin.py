"""benchmarks/full_size_standin.py: how it reads a run (sections, progress bars) and what it estimates.

Running it takes tens of minutes at full size, so the tests check its parts on small inputs: the cells it
groups under each heading, the per-unit costs it reads from tqdm's own last line, the linear estimate, and
that the notebooks' GPT2_DATA_FRACTION refuses a value outside (0, 1], and that the scratch folder the
notebook runs in holds what it reads from the repository.
"""

import io
import re

import nbformat
import pytest
from tqdm import tqdm

from conftest import REPO_ROOT, import_benchmark


@pytest.fixture(scope="module")
def standin():
    return import_benchmark("full_size_standin")


def test_cells_are_grouped_under_the_heading_before_them(standin):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title\n\nIntro"),
        nbformat.v4.new_markdown_cell("## Setup"),
        nbformat.v4.new_code_cell("a = 1"),
        nbformat.v4.new_markdown_cell("Some prose, no heading"),
        nbformat.v4.new_code_cell("b = 2"),
        nbformat.v4.new_markdown_cell("## 1. Data\n\n### a subsection is not a section"),
        nbformat.v4.new_code_cell("c = 3"),
    ])
    assert standin.sections_of(notebook) == [("Setup", [2, 4]), ("1. Data", [6])]


def tqdm_text(total, desc, elapsed):
    """What a finished tqdm bar leaves in a stream: carriage-return fragments, the last one complete."""
    stream = io.StringIO()
    progress = tqdm(total=total, desc=desc, file=stream, mininterval=0)
    for _ in range(total):
        progress.update()
    progress.start_t -= elapsed  # as if the loop had taken `elapsed` seconds
    progress.refresh()
    progress.close()
    return stream.getvalue()


def test_progress_bars_give_units_and_seconds(standin):
    text = tqdm_text(130, "fine-tuning", 195) + "epoch 1: ...\n" + tqdm_text(12, "generating", 3725)
    cell = nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output("stream", name="stdout", text=text)])
    bars = {desc: (units, seconds) for desc, units, seconds in standin.bars_in(cell)}
    assert bars["fine-tuning"][0] == 130 and abs(bars["fine-tuning"][1] - 195) <= 1
    assert bars["generating"][0] == 12 and abs(bars["generating"][1] - 3725) <= 1  # 1:02:05
    assert standin.seconds("1:02:05") == 3725 and standin.seconds("03:15") == 195


def test_an_unfinished_bar_is_not_a_measurement(standin):
    stream = io.StringIO()
    progress = tqdm(total=10, desc="fine-tuning", file=stream, mininterval=0)
    progress.update(4)
    progress.close()
    cell = nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output("stream", name="stdout",
                                                                          text=stream.getvalue())])
    assert standin.bars_in(cell) == []


def test_estimate_is_the_line_through_two_fractions_at_one(standin):
    def run(fraction, load, train):
        return {"fraction": fraction, "sections": [{"section": "load", "seconds": load},
                                                   {"section": "train", "seconds": train}]}
    # load does not depend on the data; training takes 10 + 300 * fraction seconds
    rows = standin.estimate([run(0.4, 20.0, 130.0), run(0.2, 20.0, 70.0)])
    assert [row["section"] for row in rows] == ["load", "train"]
    assert rows[0]["estimated_seconds"] == pytest.approx(20.0)
    assert rows[1]["fixed_seconds"] == pytest.approx(10.0)
    assert rows[1]["estimated_seconds"] == pytest.approx(310.0)


def test_data_fraction_outside_zero_to_one_is_refused(nb04, monkeypatch):
    for bad in ("0", "1.5", "-0.1"):
        monkeypatch.setenv("GPT2_DATA_FRACTION", bad)
        with pytest.raises(ValueError, match="GPT2_DATA_FRACTION must be in"):
            nb04.data_fraction()
    monkeypatch.delenv("GPT2_DATA_FRACTION")
    assert nb04.data_fraction() == 1.0
    monkeypatch.setenv("GPT2_DATA_FRACTION", "0.25")
    assert nb04.first_part(list(range(10)), nb04.data_fraction()) == [0, 1, 2]  # ceil(0.25 * 10), from the start


@pytest.mark.parametrize("notebook", ["04_finetune_classify.ipynb", "05_finetune_instruct.ipynb"])
def test_both_notebooks_cut_their_splits_with_04s_functions(notebook):
    sources = [cell.source for cell in nbformat.read(REPO_ROOT / notebook, as_version=4).cells if cell.cell_type == "code"]
    assert any("DATA_FRACTION = data_fraction()" in source and "first_part(" in source for source in sources)
    assert not any('os.environ.get("GPT2_DATA_FRACTION"' in source for source in sources
                   if not source.startswith("#| export"))  # read in one place: 04's data_fraction


def test_the_report_warns_when_a_section_does_not_scale(standin):
    def run(fraction, load, train):
        return {"fraction": fraction, "total_seconds": load + train,
                "sections": [{"section": "load", "seconds": load, "peak_mib": 100.0, "bars": []},
                             {"section": "train", "seconds": train, "peak_mib": 200.0, "bars": []}]}
    steady = [run(0.2, 20.0, 70.0), run(0.4, 20.0, 130.0)]
    assert "Warning" not in standin.report("05", "124M", steady, standin.estimate(steady))
    # load took longer with less data: noise, or a loop that does not scale with the fraction
    noisy = [run(0.03, 21.0, 70.0), run(0.06, 19.0, 130.0)]
    text = standin.report("05", "124M", noisy, standin.estimate(noisy))
    assert "Warning: some sections do not grow linearly" in text


def test_the_scratch_folder_links_what_the_notebooks_need_from_the_repository(standin):
    """A notebook runs in a scratch folder: it must hold what the notebook's first cell checks for, and every
    module of the repository the notebook imports (`exercises` is not installed), or the run stops there."""
    for name, _ in standin.NOTEBOOKS.values():
        needed = set()
        for cell in nbformat.read(REPO_ROOT / f"{name}.ipynb", as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for checked in re.findall(r"Path\(name\)\.exists\(\) for name in \(([^)]*)\)", cell.source):
                needed |= {path.split("/")[0] for path in re.findall(r'"([^"]+)"', checked)}
            for module in re.findall(r"^\s*(?:from|import)\s+(\w+)", cell.source, flags=re.MULTILINE):
                if (REPO_ROOT / module).is_dir() or (REPO_ROOT / f"{module}.py").is_file():
                    needed.add(module if (REPO_ROOT / module).is_dir() else f"{module}.py")
        assert {"data", "exercises", "gpt_download.py", "gpt2_from_scratch"} <= needed, name
        assert needed <= set(standin.SHARED), f"{name} needs {sorted(needed - set(standin.SHARED))} in SHARED"
