"""The drawing kit every figure is made with: a canvas in drawing units, boxes, arrows, labels and
matrices of cells in one visual language, and `save`, which refuses a label cut off at the edge and
records in the PNG what it was drawn from.

One visual language throughout (the `COLORS` below): token ids and token vectors blue, position
embeddings yellow; queries orange, keys green, values purple; layers light grey boxes; the residual
stream and its shortcuts dark red; attention weights in viridis, as in the notebooks' heatmaps; masked
or ignored entries grey; targets and the loss red, trained parameters light red; a thick black frame
points at the part the text is about.

Where a figure shows numbers it takes them from the series' own code and data: `tokenizer` is 01's
BytePairTokenizer on `data/`, and `notebook_value` reads a value a notebook writes inline (01's six
example vectors, 02's eight candidate words) from the notebook itself, so that a figure cannot drift
from the cell it illustrates.
"""

import ast
import hashlib
import json
from pathlib import Path

import matplotlib
import matplotlib.colors
import matplotlib.ft2font
import matplotlib.lines
import matplotlib.text

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

from gpt2_support.files import atomic_write_path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DPI = 150
UNIT = 0.42  # inches per drawing unit: one matrix cell is one unit

COLORS = {
    "token": "#9ecae1",      # token ids and token vectors
    "position": "#fee391",   # position embeddings
    "input": "#c6dbef",      # token + position: what the blocks read
    "query": "#fdae6b",
    "key": "#a1d99b",
    "value": "#bcbddc",
    "layer": "#eeeeee",      # a module with weights
    "edge": "#525252",
    "residual": "#a50f15",   # the residual stream and its shortcuts
    "masked": "#d9d9d9",     # masked scores, ignored targets, padding
    "target": "#fc9272",     # targets and the loss
    "trained": "#fcbba1",    # parameters that fine-tuning updates
    "highlight": "#000000",  # a frame around the part the text is about
    "text": "#252525",
    "muted": "#737373",
}


# --------------------------------------------------------------------------- drawing helpers

def canvas(width, height):
    """A figure whose axes run 0..width, 0..height in drawing units (y up), without axes drawn."""
    fig = plt.figure(figsize=(width * UNIT, height * UNIT))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def box(ax, x, y, w, h, text="", color=COLORS["layer"], size=10, edge=COLORS["edge"], weight="normal",
        rounded=True, text_color=COLORS["text"], hatch=None, lw=1.0, family=None):
    """A box with its lower-left corner at (x, y) and text centred in it."""
    style = "round,pad=0,rounding_size=0.18" if rounded else "square,pad=0"
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=style, facecolor=color, edgecolor=edge, lw=lw, hatch=hatch))
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, color=text_color,
                weight=weight, family=family)


def arrow(ax, start, end, color=COLORS["edge"], lw=1.3, style="-|>", rad=0.0, text=None, size=8.5,
          text_offset=(0.0, 0.0), ls="-"):
    """An arrow from start to end, in data units, with an optional label at its middle. Its head is sized in
    points, so it belongs on canvas()'s fixed axes: in axes that tight_layout places (a plot), where the
    placing differs between matplotlib releases, its outline in data units (and drawing_digest) would too."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color, lw=lw,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0, linestyle=ls))
    if text:
        ax.text((start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1], text,
                ha="center", va="center", fontsize=size, color=COLORS["muted"])


def label(ax, x, y, text, size=10, ha="center", va="center", color=COLORS["text"], **kwargs):
    ax.text(x, y, text, ha=ha, va=va, fontsize=size, color=color, **kwargs)


def grid(ax, x, y, values=None, shape=None, color=None, cmap=None, fmt="{:.2f}", size=7.5, cell=1.0,
         masked=None, mask_text="", row_labels=None, col_labels=None, title=None, label_size=8.5,
         highlight_row=None, cell_h=None, vmax=1.0):
    """A matrix of cells with its top-left corner at (x, y).

    values: 2-D numbers to print in the cells (and to colour them, with cmap in 0..1); or shape and one
    colour. masked: boolean matrix of cells drawn grey with mask_text instead.
    """
    if values is not None:
        values = np.asarray(values, dtype=float)
        shape = values.shape
    rows, cols = shape
    cell_h = cell if cell_h is None else cell_h
    colormap = plt.get_cmap(cmap) if cmap else None
    for i in range(rows):
        for j in range(cols):
            cx, cy = x + j * cell, y - (i + 1) * cell_h
            is_masked = masked is not None and masked[i][j]
            if is_masked:
                face, text, text_color = COLORS["masked"], mask_text, COLORS["muted"]
            else:
                face = colormap(values[i, j] / vmax) if colormap is not None else (color or "white")
                text = fmt.format(values[i, j]) if values is not None and fmt else ""
                if text.startswith("-") and float(text) == 0:
                    text = text[1:]  # -0.00 is 0.00
                text_color = "white" if colormap is not None and values[i, j] / vmax < 0.55 else COLORS["text"]
            ax.add_patch(Rectangle((cx, cy), cell, cell_h, facecolor=face, edgecolor="white", lw=1.0))
            if text:
                ax.text(cx + cell / 2, cy + cell_h / 2, text, ha="center", va="center", fontsize=size,
                        color=text_color)
    ax.add_patch(Rectangle((x, y - rows * cell_h), cols * cell, rows * cell_h, fill=False,
                           edgecolor=COLORS["edge"], lw=0.8))
    if highlight_row is not None:
        ax.add_patch(Rectangle((x, y - (highlight_row + 1) * cell_h), cols * cell, cell_h, fill=False,
                               edgecolor=COLORS["highlight"], lw=2.2))
    if row_labels is not None:
        for i, text in enumerate(row_labels):
            ax.text(x - 0.15, y - (i + 0.5) * cell_h, text, ha="right", va="center", fontsize=label_size)
    if col_labels is not None:
        for j, text in enumerate(col_labels):
            ax.text(x + (j + 0.5) * cell, y + 0.15, text, ha="left", va="bottom", fontsize=label_size,
                    rotation=45, rotation_mode="anchor")
    if title:
        ax.text(x + cols * cell / 2, y - rows * cell_h - 0.45, title, ha="center", va="top", fontsize=9.5)


def check_nothing_is_cut_off(fig, path):
    """Refuse a figure with text that runs past its edges (a label cut off in the PNG)."""
    fig.canvas.draw()
    renderer, bounds = fig.canvas.get_renderer(), fig.bbox
    for text in fig.findobj(matplotlib.text.Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < bounds.x0 - 1 or box.x1 > bounds.x1 + 1 or box.y0 < bounds.y0 - 1 or box.y1 > bounds.y1 + 1:
            raise ValueError(f"{Path(path).name}: the text {text.get_text()[:40]!r} runs past the figure's edge; "
                             "move it or widen the canvas")


def _rounded(values, places=3):
    """Coordinates to a thousandth of a drawing unit (well under a pixel), without the sign of -0.0, which
    a coordinate computed in another order may carry."""
    return (np.round(np.asarray(values, dtype=float), places) + 0.0).tolist()


def _text(text, to_data=None):
    """A text as drawn: its string, place (in data units, or its own coordinates), size, colour, style."""
    position = text.get_position() if to_data is None else to_data.transform(text.get_transform().transform(text.get_position()))
    return ["text", text.get_text(), _rounded(position), text.get_fontsize(), matplotlib.colors.to_hex(text.get_color()),
            text.get_ha(), text.get_va(), str(text.get_fontweight()), text.get_fontfamily(), text.get_rotation()]


def _shape(artist, to_data):
    """A patch or line as drawn: its outline in data units, its colours and its line style."""
    if isinstance(artist, matplotlib.lines.Line2D):
        outline = artist.get_xydata()
    else:
        outline = to_data.transform(artist.get_transform().transform_path(artist.get_path()).vertices)
    colors = [matplotlib.colors.to_hex(color, keep_alpha=True) for color in (
        (artist.get_color(),) if isinstance(artist, matplotlib.lines.Line2D) else (artist.get_facecolor(), artist.get_edgecolor()))]
    hatch = None if isinstance(artist, matplotlib.lines.Line2D) else artist.get_hatch()
    return [type(artist).__name__, _rounded(outline), colors, artist.get_linewidth(), str(artist.get_linestyle()), hatch]


def drawing(fig):
    """What a figure shows, in the coordinates it was drawn in: the canvas; for each axes its limits, ticks,
    titles and legend; every text, shape and line with its place, colours and style. Not how a matplotlib
    release turns that into pixels (text rasterising, or tight_layout's placing of axes around text), so it
    is the same under every release, while a change to a figure's code or to the numbers it shows changes it."""
    fig.canvas.draw()  # ticks and their labels exist once the figure is drawn
    items = [["canvas", _rounded(fig.get_size_inches()), fig.dpi]]
    items += [_text(text) for text in fig.texts + ([fig._suptitle] if fig._suptitle else [])]
    for ax in fig.axes:
        to_data = ax.transData.inverted()
        items.append(["axes", _rounded(ax.get_xlim()), _rounded(ax.get_ylim()), ax.axison])
        if ax.axison:
            for axis in (ax.xaxis, ax.yaxis):
                items.append(["ticks", _rounded(axis.get_ticklocs()), [t.get_text() for t in axis.get_ticklabels()],
                              axis.get_ticklabels()[0].get_fontsize() if axis.get_ticklabels() else None,
                              axis.get_ticklabels()[0].get_rotation() if axis.get_ticklabels() else None,
                              axis.get_label().get_text()])
            items.append(["spines", sorted(name for name, spine in ax.spines.items() if spine.get_visible())])
        items += [_text(title) for title in (ax.title, ax._left_title, ax._right_title) if title.get_text()]
        legend = ax.get_legend()
        if legend is not None:
            items.append(["legend", [t.get_text() for t in legend.get_texts()], legend._loc, legend.get_frame_on()])
        items += [_text(text, to_data) for text in ax.texts]
        items += [_shape(artist, to_data) for artist in list(ax.patches) + list(ax.lines)]
        if ax.images or ax.collections:
            raise ValueError("drawing() does not describe images or collections yet: add them before using them")
    return items


def drawing_digest(fig):
    """The SHA-256 of drawing(fig): save() stores it in the PNG, and the tests compare it with a redraw."""
    return hashlib.sha256(json.dumps(drawing(fig), sort_keys=True).encode("utf-8")).hexdigest()


def renderer_version():
    """What turns a drawing into pixels: matplotlib and the FreeType it rasterises text with."""
    return f"matplotlib {matplotlib.__version__}, FreeType {matplotlib.ft2font.__freetype_version__}"


def save(fig, path):
    """Write the PNG under a temporary name and rename it: a crash never leaves half a figure.

    The PNG records what it was drawn from (drawing_digest, as "Drawing") and what rendered it
    (renderer_version, as "Software"): the tests redraw every figure and compare the digests under any
    matplotlib release, and the pixels too when the release is the one that drew the committed file."""
    path = Path(path)
    check_nothing_is_cut_off(fig, path)
    metadata = {"Software": renderer_version(), "Drawing": drawing_digest(fig)}
    with atomic_write_path(path) as partial:
        fig.savefig(partial, dpi=DPI, format="png", metadata=metadata, facecolor="white")
    plt.close(fig)


def recorded(path):
    """(drawing digest, renderer version) that save() stored in a PNG; None for what it lacks."""
    from PIL import Image  # matplotlib's own dependency, for reading PNG text chunks
    with Image.open(path) as image:
        return image.text.get("Drawing"), image.text.get("Software")


def notebook_value(notebook, name):
    """The value a notebook's code assigns to `name` as its full profile runs it: the right-hand side of the
    first assignment to it at the top level of a code cell, or in the `else` branch of an `if SMOKE:` block
    (`A, B = 5, 5` counts for both names).

    Only that right-hand side is evaluated, with `torch`, `GPTConfig` and SMOKE = False available (so
    `2 if SMOKE else 10` gives 10): the figure uses the numbers the notebook shows, and a change to them
    there changes the figure here.
    """
    from gpt2_from_scratch.architecture import GPTConfig

    cells = json.loads((REPO_ROOT / notebook).read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        try:
            statements = list(ast.parse("".join(cell["source"])).body)
        except SyntaxError:  # a cell with IPython magics
            continue
        while statements:
            node = statements.pop(0)
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "SMOKE":
                statements[:0] = node.orelse
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
                if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                    pairs = zip(target.elts, value.elts)
                else:
                    pairs = [(target, value)]
                for target, value in pairs:
                    if isinstance(target, ast.Name) and target.id == name:
                        return eval(compile(ast.Expression(value), notebook, "eval"),
                                    {"torch": torch, "SMOKE": False, "GPTConfig": GPTConfig})
    raise ValueError(f"{notebook} assigns no value to {name!r} at the top level of a code cell")


def tokenizer():
    from gpt2_from_scratch.architecture import BytePairTokenizer
    return BytePairTokenizer.from_files(REPO_ROOT / "data" / "gpt2-tokenizer")


def shown(token):
    """A token as the figures print it: spaces made visible."""
    return token.replace(" ", "␣").replace("\n", "↵")

