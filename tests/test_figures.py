"""The diagrams: every figure a notebook shows exists, says in words what it shows, and is what
`python -m figures.make_figures` draws today (so no figure can be edited by hand or go stale)."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

import figures.architecture
import figures.drawing as drawing
import figures.make_figures as make_figures
import figures.weights
import gpt2_support.weight_names
from conftest import REPO_ROOT

NOTEBOOKS = sorted(REPO_ROOT.glob("0*_*.ipynb"))
# ![alt](path) in markdown; alt text may not contain "]" or newlines, the path no spaces or ")".
IMAGE_LINK = re.compile(r"!\[([^\]\n]*)\]\(([^)\s]+)\)")
MIN_ALT_WORDS = 25  # enough to state what the figure shows, not merely name it


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


def test_the_script_draws_exactly_the_figures_the_notebooks_show():
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


def stale_figures(drawn, committed_dir):
    """{name: why} for each freshly drawn PNG in `drawn` that the committed one in committed_dir does not match.

    Always compared: what the two were drawn from (drawing_digest, which save() records in the PNG), so a
    figure left behind when its code or the numbers it shows changed is stale under any matplotlib release.
    Compared too where this machine's renderer (matplotlib and its FreeType) is the one that drew the
    committed file: the pixels, so that a figure edited by hand is caught. Another release rasterises text
    differently (matplotlib 3.10.9 with FreeType 2.6.1 against 3.11.2 with FreeType 2.14.3: 28,569 to
    104,487 pixels of a figure differ, measured 2026-12-04), so there the pixels say nothing about staleness."""
    renderer, stale = drawing.renderer_version(), {}
    for path in drawn:
        committed = committed_dir / path.name
        digest, drawn_by = drawing.recorded(committed)
        if digest is None:
            stale[path.name] = "records no drawing digest (not written by drawing.save)"
        elif digest != drawing.recorded(path)[0]:
            stale[path.name] = "drawn from other code or numbers than the script uses today"
        elif drawn_by == renderer:
            differing = differing_pixels(path, committed)
            if differing is None or differing > 20:  # a few pixels: the test's old margin; ours are identical
                stale[path.name] = "a different size" if differing is None else f"{differing} pixels differ"
    return stale


def test_the_committed_figures_are_what_the_script_draws(tmp_path):
    """Redraw every figure: a figure edited by hand, or left behind when its code or numbers changed, fails."""
    stale = stale_figures(make_figures.draw(out_dir=tmp_path), REPO_ROOT / "figures")
    assert not stale, f"redraw with `python -m figures.make_figures` and commit: {stale}"


def test_a_changed_figure_is_stale_and_a_figure_edited_by_hand_too(tmp_path, monkeypatch):
    """The comparison can fail: a colour or a label changed in the script, and pixels painted over in a copy
    of the committed file that keeps its recorded digest."""
    from PIL import Image, PngImagePlugin

    (tmp_path / "committed").mkdir()
    name = "01_qkv.png"
    original = REPO_ROOT / "figures" / name
    monkeypatch.setitem(drawing.COLORS, "query", "#ff0000")
    recoloured = make_figures.draw(["01_qkv"], out_dir=tmp_path / "recoloured")
    monkeypatch.undo()
    assert "drawn from other code" in stale_figures(recoloured, REPO_ROOT / "figures")[name]

    monkeypatch.setattr(figures.architecture, "label", lambda ax, x, y, text, **kwargs: ax.text(x, y, text + ".", **kwargs))
    relabelled = make_figures.draw(["01_qkv"], out_dir=tmp_path / "relabelled")
    monkeypatch.undo()
    assert "drawn from other code" in stale_figures(relabelled, REPO_ROOT / "figures")[name]

    redrawn = make_figures.draw(["01_qkv"], out_dir=tmp_path / "redrawn")
    with Image.open(redrawn[0]) as image:
        info = PngImagePlugin.PngInfo()
        for key, value in image.text.items():
            info.add_text(key, value)
        painted = image.convert("RGBA")
    painted.paste((255, 0, 0, 255), (0, 0, 40, 40))  # 1,600 pixels painted red, the recorded digest kept
    painted.save(tmp_path / "committed" / name, pnginfo=info)
    assert drawing.recorded(tmp_path / "committed" / name) == drawing.recorded(redrawn[0])
    assert stale_figures(redrawn, tmp_path / "committed") == {name: "1600 pixels differ"}
    assert stale_figures(redrawn, original.parent) == {}


def test_figures_use_the_notebooks_numbers():
    """notebook_value reads what the notebook assigns, and names the notebook when the name is not there."""
    candidates = drawing.notebook_value("02_pretraining.ipynb", "candidates")
    assert candidates[:3] == ["brush", "hat", "wife"]
    assert tuple(drawing.notebook_value("01_architecture.ipynb", "x").shape) == (6, 3)
    with pytest.raises(ValueError, match="01_architecture.ipynb assigns no value to 'no_such_name'"):
        drawing.notebook_value("01_architecture.ipynb", "no_such_name")


def test_an_unknown_figure_name_is_refused_with_the_list(tmp_path):
    with pytest.raises(ValueError, match="no figure named 01_nothing; the figures are: 01_text_to_embeddings"):
        make_figures.draw(["01_nothing"], out_dir=tmp_path)


def test_a_figure_with_a_label_cut_off_is_refused_and_not_written(tmp_path):
    fig, ax = drawing.canvas(4, 2)
    drawing.label(ax, 3.5, 1.0, "a label that runs past the right edge", ha="left")
    with pytest.raises(ValueError, match="runs past the figure's edge"):
        drawing.save(fig, tmp_path / "cut.png")
    assert list(tmp_path.iterdir()) == []
    fig, ax = drawing.canvas(4, 2)
    drawing.label(ax, 2.0, 1.0, "fits")
    drawing.save(fig, tmp_path / "fits.png")
    assert (tmp_path / "fits.png").is_file()


def test_the_mapping_figure_reads_the_table_of_weight_names(tmp_path, monkeypatch):
    """03's figure takes its names from gpt2_support.weight_names: renaming a parameter there changes it."""
    renamed = tuple((ours.replace("ff.expand", "ff.fc"), *rest) for ours, *rest in
                    gpt2_support.weight_names.WEIGHT_NAMES)
    monkeypatch.setattr(gpt2_support.weight_names, "WEIGHT_NAMES", renamed)
    rows = figures.weights.mapping_rows(figures.weights.openai_variable_shapes(figures.weights.HPARAMS_124M))
    assert ("model/h0/mlp/c_fc/w", "blocks[0].ff.fc.weight", "[3072, 768]", "drop the 1, transpose") in rows
    redrawn = make_figures.draw(["03_checkpoint_mapping"], out_dir=tmp_path)
    assert "drawn from other code" in stale_figures(redrawn, REPO_ROOT / "figures")[
        "03_checkpoint_mapping.png"]


def test_run_as_a_file_it_says_how_to_run_it():
    """`python figures/make_figures.py` cannot import the package figures/ is: it says to use -m instead."""
    result = subprocess.run([sys.executable, "figures/make_figures.py"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "python -m figures.make_figures" in result.stderr
