"""The diagrams: every figure a notebook shows exists, says in words what it shows, and is what
figures/make_figures.py draws today (so no figure can be edited by hand or go stale)."""

import json
import re

import numpy as np
import pytest
from matplotlib.image import imread

from conftest import REPO_ROOT, import_script

NOTEBOOKS = sorted(REPO_ROOT.glob("0*_*.ipynb"))
# ![alt](path) in markdown; alt text may not contain "]" or newlines, the path no spaces or ")".
IMAGE_LINK = re.compile(r"!\[([^\]\n]*)\]\(([^)\s]+)\)")
MIN_ALT_WORDS = 25  # enough to state what the figure shows, not merely name it


@pytest.fixture(scope="module")
def make_figures():
    return import_script("figures/make_figures.py")


def shown_figures():
    """(notebook name, alt text, path) of every image a notebook's markdown shows."""
    shown = []
    for notebook in NOTEBOOKS:
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            source = "".join(cell["source"])
            assert "<img" not in source, f"{notebook.name}: show figures with ![alt](figures/...), not <img>"
            assert "attachment:" not in source, f"{notebook.name}: cell attachments do not render on Colab"
            links = IMAGE_LINK.findall(source)
            assert len(links) == source.count("!["), f"{notebook.name}: an image link with [ ] in its alt text"
            shown += [(notebook.name, alt, path) for alt, path in links]
    return shown


def test_every_figure_shown_exists_and_has_alt_text_that_describes_it():
    shown = shown_figures()
    assert shown, "no notebook shows a figure"
    for notebook, alt, path in shown:
        assert path.startswith("figures/") and path.endswith(".png"), f"{notebook}: {path} is not in figures/"
        assert (REPO_ROOT / path).is_file(), f"{notebook} shows {path}, which does not exist"
        assert len(alt.split()) >= MIN_ALT_WORDS, f"{notebook}: the alt text of {path} is too short to describe it"
        # A figure belongs to the chapter that shows it: figures/02_... is shown in 02_pretraining.
        assert path.split("/")[1][:3] == notebook[:3], f"{notebook} shows another chapter's figure {path}"


def test_the_script_draws_exactly_the_figures_the_notebooks_show(make_figures):
    shown = [path for _, _, path in shown_figures()]
    assert len(shown) == len(set(shown)), "a figure is shown twice"
    drawn = {f"figures/{name}.png" for name in make_figures.FIGURES}
    committed = {f"figures/{path.name}" for path in (REPO_ROOT / "figures").glob("*.png")}
    assert set(shown) == drawn == committed, (
        f"shown but not drawn: {set(shown) - drawn}; drawn but not shown: {drawn - set(shown)}; "
        f"committed but not drawn: {committed - drawn}")


def differing_pixels(path_a, path_b):
    """How many pixels of two same-sized PNGs differ by more than 10% in some channel (None: sizes differ)."""
    a, b = imread(path_a), imread(path_b)
    if a.shape != b.shape:
        return None
    return int(np.count_nonzero(np.abs(a - b).max(axis=-1) > 0.1))


def test_the_committed_figures_are_what_the_script_draws(make_figures, tmp_path):
    """Redraw every figure and compare pixels: a figure edited by hand, or left behind when its code or the
    numbers it shows changed, fails. (A few pixels of tolerance, for font rasterising that could differ
    between machines; on ours the files are byte-identical.)"""
    stale = {}
    for path in make_figures.draw(out_dir=tmp_path):
        committed = REPO_ROOT / "figures" / path.name
        differing = differing_pixels(path, committed)
        if differing is None or differing > 20:
            stale[path.name] = "a different size" if differing is None else f"{differing} pixels differ"
    assert not stale, f"redraw with `python figures/make_figures.py` and commit: {stale}"


def test_figures_use_the_notebooks_numbers(make_figures):
    """notebook_value reads what the notebook assigns, and names the notebook when the name is not there."""
    candidates = make_figures.notebook_value("02_pretraining.ipynb", "candidates")
    assert candidates[:3] == ["brush", "hat", "wife"]
    assert tuple(make_figures.notebook_value("01_architecture.ipynb", "x").shape) == (6, 3)
    with pytest.raises(ValueError, match="01_architecture.ipynb assigns no value to 'no_such_name'"):
        make_figures.notebook_value("01_architecture.ipynb", "no_such_name")


def test_an_unknown_figure_name_is_refused_with_the_list(make_figures, tmp_path):
    with pytest.raises(ValueError, match="no figure named 01_nothing; the figures are: 01_text_to_embeddings"):
        make_figures.draw(["01_nothing"], out_dir=tmp_path)


def test_a_figure_with_a_label_cut_off_is_refused_and_not_written(make_figures, tmp_path):
    fig, ax = make_figures.canvas(4, 2)
    make_figures.label(ax, 3.5, 1.0, "a label that runs past the right edge", ha="left")
    with pytest.raises(ValueError, match="runs past the figure's edge"):
        make_figures.save(fig, tmp_path / "cut.png")
    assert list(tmp_path.iterdir()) == []
    fig, ax = make_figures.canvas(4, 2)
    make_figures.label(ax, 2.0, 1.0, "fits")
    make_figures.save(fig, tmp_path / "fits.png")
    assert (tmp_path / "fits.png").is_file()
