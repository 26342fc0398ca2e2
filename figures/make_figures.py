"""Draw the series' diagrams: every `figures/*.png` that a notebook shows comes from this script.

    python figures/make_figures.py                  # redraw them all into figures/
    python figures/make_figures.py 01_causal_mask   # redraw some, by name
    python figures/make_figures.py --out DIR        # draw into another folder (the tests compare)

The diagrams are drawn with matplotlib, from the series' own code and data wherever there are numbers:
token ids come from `data/` through 01's `BytePairTokenizer`, attention weights from 01's classes on
01's example vectors, the decoding panels from 02's filters, the checkpoint's shapes from
`gpt_download.openai_variable_shapes`, the collated batch from 05's `custom_collate_fn`. Values that a
notebook writes inline (01's six example vectors, 02's eight candidate words) are read from the notebook
itself (`notebook_value`), so a figure cannot drift from the cell it illustrates.

One visual language throughout (the `COLORS` below): token ids and token vectors blue, position
embeddings yellow; queries orange, keys green, values purple; layers light grey boxes; the residual
stream and its shortcuts dark red; attention weights in viridis, as in the notebooks' heatmaps; masked
or ignored entries grey; targets and the loss red, trained parameters light red; a thick black frame
points at the part the text is about.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import sys
import textwrap
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

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
FIGURES_DIR = REPO_ROOT / "figures"
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
    temporary = path.with_name(f".{path.name}.tmp")
    metadata = {"Software": renderer_version(), "Drawing": drawing_digest(fig)}
    fig.savefig(temporary, dpi=DPI, format="png", metadata=metadata, facecolor="white")
    plt.close(fig)
    os.replace(temporary, path)


def recorded(path):
    """(drawing digest, renderer version) that save() stored in a PNG; None for what it lacks."""
    from PIL import Image  # matplotlib's own dependency, for reading PNG text chunks
    with Image.open(path) as image:
        return image.text.get("Drawing"), image.text.get("Software")


def notebook_value(notebook, name):
    """The value a notebook's code assigns to `name` at the top level of a cell (the first such cell).

    Only the right-hand side is evaluated, with `torch` available: the figure uses the numbers the
    notebook shows, and a change to them there changes the figure here.
    """
    cells = json.loads((REPO_ROOT / notebook).read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        try:
            tree = ast.parse(source)
        except SyntaxError:  # a cell with IPython magics
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return eval(compile(ast.Expression(node.value), notebook, "eval"), {"torch": torch})
    raise ValueError(f"{notebook} assigns no value to {name!r} at the top level of a code cell")


def tokenizer():
    from gpt2_from_scratch.architecture import BytePairTokenizer
    return BytePairTokenizer.from_files(REPO_ROOT / "data" / "gpt2-tokenizer")


def shown(token):
    """A token as the figures print it: spaces made visible."""
    return token.replace(" ", "␣").replace("\n", "↵")


# --------------------------------------------------------------------------- 01

def fig_01_text_to_embeddings(path):
    tok = tokenizer()
    text = (REPO_ROOT / "data" / "the-verdict.txt").read_text(encoding="utf-8")
    ids = tok.encode(text)[:4]
    pieces = [tok.decode([i]) for i in ids]
    fig, ax = canvas(23.6, 9.6)
    label(ax, 0.3, 9.0, f"text: \"{''.join(pieces)}\" (the first tokens of the-verdict.txt)", size=10.5, ha="left")
    col_w, x0 = 2.6, 5.0
    label(ax, 0.3, 7.8, "tokens", ha="left")
    label(ax, 0.3, 6.6, "token ids", ha="left")
    for t, (piece, token_id) in enumerate(zip(pieces, ids)):
        x = x0 + t * (col_w + 0.4)
        box(ax, x, 7.35, col_w, 0.9, repr(piece), color="white", size=9.5, family="monospace")
        box(ax, x, 6.15, col_w, 0.9, f"{token_id:,}", color=COLORS["token"], size=9.5)
        arrow(ax, (x + col_w / 2, 7.35), (x + col_w / 2, 7.05))
    # the two tables, as strips of cells
    label(ax, 0.3, 4.9, "tok_emb[id]\n(row of a 50,257 × 768 table)", ha="left", size=8.5)
    label(ax, 0.3, 3.2, "pos_emb[position]\n(row of a 1,024 × 768 table)", ha="left", size=8.5)
    label(ax, 0.3, 1.3, "input vectors\n(4 × 768; with a batch,\n(batch, 4, 768))", ha="left", size=8.5)
    for t in range(4):
        x = x0 + t * (col_w + 0.4)
        arrow(ax, (x + col_w / 2, 6.15), (x + col_w / 2, 5.45))
        grid(ax, x, 5.4, shape=(1, 6), color=COLORS["token"], cell=col_w / 6, cell_h=0.8)
        label(ax, x + col_w / 2, 4.35, "768 numbers", size=7.5, color=COLORS["muted"])
        label(ax, x + col_w / 2, 3.95, "+", size=14)
        grid(ax, x, 3.6, shape=(1, 6), color=COLORS["position"], cell=col_w / 6, cell_h=0.8)
        label(ax, x + col_w / 2, 2.55, f"position {t}", size=7.5, color=COLORS["muted"])
        arrow(ax, (x + col_w / 2, 2.35), (x + col_w / 2, 1.95))
        grid(ax, x, 1.9, shape=(1, 6), color=COLORS["input"], cell=col_w / 6, cell_h=0.8)
    label(ax, 17.2, 5.0, "an embedding is a row lookup:\nid 40 returns row 40", size=8.5, ha="left",
          color=COLORS["muted"])
    label(ax, 17.2, 3.2, "the same position row is added\nin every sequence of a batch", size=8.5, ha="left",
          color=COLORS["muted"])
    label(ax, 17.2, 1.4, "x = drop_emb(tok_emb(token_ids)\n      + pos_emb(positions))", size=8.5, ha="left",
          family="monospace")
    save(fig, path)


def fig_01_sliding_windows(path):
    tok = tokenizer()
    text = (REPO_ROOT / "data" / "the-verdict.txt").read_text(encoding="utf-8")
    ids = tok.encode(text)[:13]
    max_length = stride = 4
    cell_w = 1.55
    fig, ax = canvas(22.8, 8.2)
    x0 = 1.2
    label(ax, 0.2, 7.6, "token ids of the-verdict.txt, cut into windows with max_length = 4, stride = 4",
          ha="left", size=10.5)
    for t, token_id in enumerate(ids):
        x = x0 + t * cell_w
        box(ax, x, 5.9, cell_w - 0.1, 0.75, f"{token_id}", color=COLORS["token"], size=8.5, rounded=False)
        label(ax, x + cell_w / 2 - 0.05, 6.95, shown(tok.decode([token_id])), size=7.5, family="monospace",
              color=COLORS["muted"])
    colors = ["#08306b", "#2171b5", "#6baed6"]  # three shades of the token blue
    for window in range(3):
        start = window * stride
        x = x0 + start * cell_w
        ax.add_patch(Rectangle((x - 0.05, 5.8), max_length * cell_w, 0.95, fill=False, edgecolor=colors[window],
                               lw=2.0))
        label(ax, x + max_length * cell_w / 2, 5.45, f"window {window}: inputs", size=8.5, color=colors[window])
        # its target: the same window moved one token to the right
        tx = x + cell_w
        ax.add_patch(Rectangle((tx - 0.05, 4.2), max_length * cell_w, 0.75, fill=False, edgecolor=colors[window],
                               lw=2.0, ls="--"))
        for k in range(max_length):
            box(ax, tx + k * cell_w, 4.25, cell_w - 0.1, 0.65, f"{ids[start + k + 1]}", color=COLORS["target"],
                size=8.5, rounded=False)
        label(ax, tx + max_length * cell_w / 2, 3.85, f"window {window}: targets", size=8.5, color=colors[window])
    # the first window's examples, spelled out
    inputs, targets = ids[:max_length], ids[1:max_length + 1]
    label(ax, 0.2, 2.9, "one window holds 4 next-token examples (targets[t] follows inputs[0..t]):", ha="left",
          size=9.5)
    for t in range(max_length):
        seen = "".join(tok.decode([i]) for i in inputs[: t + 1])
        label(ax, 0.6, 2.3 - t * 0.55, f"{seen!r:<16} →  {tok.decode([targets[t]])!r}", ha="left", size=8.5,
              family="monospace")
    save(fig, path)


def fig_01_attention_weights(path):
    words = notebook_value("01_architecture.ipynb", "words")
    x = notebook_value("01_architecture.ipynb", "x")
    scores = x @ x.T
    weights = torch.softmax(scores, dim=-1)
    contexts = weights @ x
    fig, ax = canvas(28.2, 10)
    top = 8.4
    grid(ax, 2.2, top, values=x, color=COLORS["input"], row_labels=words, title="x: 6 tokens × 3", highlight_row=1)
    label(ax, 5.85, top - 3, "x @ x.T", size=9)
    arrow(ax, (5.3, top - 3.4), (6.5, top - 3.4))
    grid(ax, 7.0, top, values=scores, color="white", col_labels=words, title="scores = x @ x.T\n"
         "scores[i, j] = x[i] · x[j]", highlight_row=1)
    label(ax, 14.0, top - 2.9, "softmax\nalong\neach row", size=9)
    arrow(ax, (13.3, top - 3.8), (14.7, top - 3.8))
    grid(ax, 15.0, top, values=weights, cmap="viridis", col_labels=words,
         title="weights: each row sums to 1", highlight_row=1)
    label(ax, 22.0, top - 3, "weights @ x", size=9)
    arrow(ax, (21.3, top - 3.4), (22.7, top - 3.4))
    grid(ax, 23.0, top, values=contexts, color=COLORS["input"], highlight_row=1,
         title="contexts: row i is token i's\nweighted average of all rows of x")
    label(ax, 0.3, 0.6, "Row \"painter\" (framed): its scores with every token, their softmax, and its context "
          "vector, as in section 3.1.", ha="left", size=9.5)
    save(fig, path)


def section_3_2_scores():
    """01's six words and the scaled scores of section 3.2's SelfAttention(d_in=3, d_out=2), built with
    the notebook's seed, so the numbers are the ones 01 prints."""
    from gpt2_from_scratch.architecture import SelfAttention
    words = notebook_value("01_architecture.ipynb", "words")
    x = notebook_value("01_architecture.ipynb", "x")
    torch.manual_seed(123)  # as in the notebook
    self_attention = SelfAttention(d_in=3, d_out=2)
    with torch.no_grad():
        queries, keys = self_attention.W_query(x), self_attention.W_key(x)
        return words, queries @ keys.T / keys.shape[-1] ** 0.5


def fig_01_causal_mask(path):
    words, scores = section_3_2_scores()
    causal_mask = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    masked_weights = torch.softmax(scores.masked_fill(causal_mask, float("-inf")), dim=-1)
    fig, ax = canvas(26, 10.2)
    top = 8.4
    grid(ax, 2.6, top, values=scores, color="white", row_labels=words, col_labels=words,
         title="scores = queries @ keys.T / √2")
    arrow(ax, (9.0, top - 3), (10.4, top - 3), text="masked_fill\n(causal_mask,\n−∞)", text_offset=(0, 1.2))
    grid(ax, 10.8, top, values=scores, color="white", masked=causal_mask.numpy(), mask_text="−∞",
         col_labels=words, title="above the diagonal: the future")
    arrow(ax, (17.2, top - 3), (18.6, top - 3), text="softmax\nalong\neach row", text_offset=(0, 1.2))
    grid(ax, 19.0, top, values=masked_weights, cmap="viridis", masked=causal_mask.numpy(), mask_text="0",
         col_labels=words, title="masked_weights: zero on the future,\neach row still sums to 1")
    label(ax, 0.3, 0.55, "Row i (the query) may attend only to columns 0..i (the keys up to itself). "
          "Numbers of section 3.2's SelfAttention(d_in=3, d_out=2), masked as in 3.3.", ha="left", size=9.5)
    save(fig, path)


def fig_01_qkv(path):
    words, scores = section_3_2_scores()
    weights = torch.softmax(scores, dim=-1)
    fig, ax = canvas(28, 13)
    top = 11.6
    grid(ax, 2.2, top - 2.6, shape=(6, 3), color=COLORS["input"], row_labels=words, title="x (6 × d_in = 3)")
    rows = [("W_query", "queries", COLORS["query"], top), ("W_key", "keys", COLORS["key"], top - 3.6),
            ("W_value", "values", COLORS["value"], top - 7.2)]
    for weight_name, name, color, y in rows:
        arrow(ax, (5.4, top - 5.6), (7.0, y - 1.4))
        grid(ax, 7.2, y - 0.5, shape=(3, 2), color=color, cell=0.6)
        label(ax, 8.6, y - 1.4, f"{weight_name}:\nLinear(3, 2)", size=8.5, ha="left")
        arrow(ax, (10.6, y - 1.4), (11.8, y - 1.4), text=f"{weight_name}(x)", text_offset=(0, 0.3), size=7.5)
        grid(ax, 12.0, y, shape=(6, 2), color=color, cell=0.45)
        label(ax, 13.1, y - 1.4, f"{name} (6 × 2)", size=8.5, ha="left")
    arrow(ax, (15.4, top - 1.4), (18.2, top - 3.2))
    arrow(ax, (15.4, top - 5.0), (18.2, top - 3.8))
    label(ax, 20.45, top - 0.1, "scores = queries @ keys.T / √2,\nsoftmax along each row", size=9)
    grid(ax, 18.2, top - 1.2, values=weights.numpy(), cmap="viridis", cell=0.75, size=6.5,
         title="attention weights (6 × 6)")
    arrow(ax, (22.8, top - 3.6), (23.9, top - 5.3))
    arrow(ax, (15.4, top - 8.6), (23.6, top - 7.2), text="weights @ values", text_offset=(0.5, -0.6))
    grid(ax, 23.8, top - 5.4, shape=(6, 2), color=COLORS["value"], cell=0.55, title="context\nvectors (6 × 2)")
    label(ax, 0.3, 0.9, "A query asks, a key offers, a value is passed on: scores compare queries with keys; "
          "the context of a token averages the values by its weights.", ha="left", size=9.5)
    label(ax, 0.3, 0.35, "Weights of section 3.2's untrained SelfAttention(d_in=3, d_out=2): nearly uniform "
          "until training shapes W_query and W_key.", ha="left", size=9, color=COLORS["muted"])
    save(fig, path)


def fig_01_heads(path):
    fig, ax = canvas(27, 13.6)
    n_heads = 12
    head_colors = [plt.get_cmap("Oranges")(0.3 + 0.3 * (h % 2)) for h in range(n_heads)]

    def vector(x, y, w, colors, h=0.55, text=None):
        n = len(colors)
        for k in range(n):
            ax.add_patch(Rectangle((x + k * w / n, y), w / n, h, facecolor=colors[k], edgecolor="white", lw=0.6))
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=COLORS["edge"], lw=0.8))
        if text:
            label(ax, x + w + 0.2, y + h / 2, text, size=8.5, ha="left")

    def stack(x, y, colors):  # one (n_tokens x 64) matrix per head, four of the twelve drawn
        for h in range(4):
            ax.add_patch(Rectangle((x + h * 0.35, y + h * 0.35), 2.0, 1.8, facecolor=colors[h],
                                   edgecolor=COLORS["edge"], lw=0.8))

    label(ax, 0.3, 13.0, "CausalSelfAttention(emb_dim=768, n_heads=12): head_dim = 768 / 12 = 64, for a batch of "
          "sequences of n_tokens tokens", ha="left", size=10)
    box(ax, 0.3, 11.2, 3.2, 0.8, "x", color=COLORS["input"])
    label(ax, 3.7, 11.6, "(batch, n_tokens, 768)", size=8.5, ha="left")
    arrow(ax, (1.9, 11.2), (1.9, 10.5), text="self.qkv: Linear(768, 2304)", text_offset=(2.6, 0))
    qkv_colors = [COLORS["query"]] * 12 + [COLORS["key"]] * 12 + [COLORS["value"]] * 12
    vector(0.3, 9.8, 12.0, qkv_colors, text="(batch, n_tokens, 2304) = [queries | keys | values]: .split(768, dim=-1)")
    arrow(ax, (1.9, 9.8), (1.9, 9.0), text="queries (keys and values alike)", text_offset=(2.9, 0))
    vector(0.3, 8.3, 12.0, head_colors, text="(batch, n_tokens, 768): 12 slices of 64 numbers, one per head")
    arrow(ax, (1.9, 8.3), (1.9, 7.5), text="split_heads: .view(batch, n_tokens, 12, 64)", text_offset=(4.0, 0))
    for k in range(n_heads):  # each token's vector becomes 12 rows of 64
        ax.add_patch(Rectangle((0.8, 7.2 - k * 0.32), 2.2, 0.3, facecolor=head_colors[k], edgecolor="white"))
    label(ax, 1.9, 3.0, "(batch, n_tokens, 12, 64):\n12 rows of 64 per token", size=8.5)
    arrow(ax, (3.6, 5.4), (6.4, 5.4), text=".transpose(1, 2)", text_offset=(0, 0.35))
    stack(6.8, 4.2, head_colors)
    label(ax, 8.3, 3.0, "(batch, 12, n_tokens, 64):\nan n_tokens × 64 matrix per head", size=8.5)
    arrow(ax, (10.6, 5.4), (13.6, 5.4), text="scaled_dot_product_attention\n(is_causal=True),\n"
          "each head on its own", text_offset=(0, 1.0))
    stack(14.0, 4.2, [COLORS["value"]] * 4)
    label(ax, 15.5, 3.0, "context:\n(batch, 12, n_tokens, 64)", size=8.5)
    arrow(ax, (17.9, 5.4), (19.6, 5.4), text=".transpose(1, 2)\n.reshape(batch,\nn_tokens, 768)",
          text_offset=(0, 1.0))
    vector(19.8, 5.1, 6.6, [COLORS["value"]] * 12)
    label(ax, 23.1, 4.5, "(batch, n_tokens, 768):\nthe heads side by side", size=8.5)
    arrow(ax, (23.1, 3.8), (23.1, 2.6), text="self.out_proj:\nLinear(768, 768)", text_offset=(-1.6, 0),
          size=8.5)
    box(ax, 19.8, 1.6, 6.6, 0.9, "output (batch, n_tokens, 768): heads mixed", color=COLORS["input"], size=8.5)
    label(ax, 0.3, 0.6, "Splitting into heads only reshapes: nothing is computed until the attention. "
          "Each head attends with its own 64 of the 768 dimensions.", ha="left", size=9.5)
    save(fig, path)


def fig_01_transformer_block(path):
    fig, ax = canvas(17, 17)
    cx, w = 6.0, 5.2
    stream_x = 1.6

    def layer(y, text, detail):
        box(ax, cx - w / 2, y, w, 1.0, text, size=10)
        label(ax, cx + w / 2 + 0.3, y + 0.5, detail, size=8.5, ha="left", color=COLORS["muted"])

    label(ax, 0.3, 16.4, "TransformerBlock (pre-LN), shapes (batch, n_tokens, 768) throughout", ha="left", size=10.5)
    box(ax, cx - w / 2, 0.5, w, 0.9, "x: input (batch, n_tokens, 768)", color=COLORS["input"], size=9)
    layer(2.2, "norm1: LayerNorm(768)", "OpenAI: ln_1")
    layer(3.9, "attn: CausalSelfAttention", "12 heads, OpenAI: attn/c_attn, attn/c_proj")
    layer(5.6, "drop_resid: Dropout", "drop_rate (0.1 in pretraining)")
    layer(8.2, "norm2: LayerNorm(768)", "OpenAI: ln_2")
    layer(9.9, "ff: FeedForward", "expand 768→3072, GELU, project 3072→768\nOpenAI: mlp/c_fc, mlp/c_proj")
    layer(11.6, "drop_resid: Dropout", "")
    box(ax, cx - w / 2, 14.9, w, 0.9, "output (batch, n_tokens, 768)", color=COLORS["input"], size=9)
    ax.plot([cx, cx], [1.4, 1.75], color=COLORS["residual"], lw=2)  # the stream, up to where the shortcut leaves
    for y0, y1 in ((1.75, 2.2), (3.2, 3.9), (4.9, 5.6), (9.2, 9.9), (10.9, 11.6)):
        arrow(ax, (cx, y0), (cx, y1))
    # the two additions on the residual stream
    for y_add, y_from in ((7.2, 6.6), (13.2, 12.6)):
        ax.add_patch(plt.Circle((cx, y_add), 0.38, facecolor="white", edgecolor=COLORS["residual"], lw=1.8))
        label(ax, cx, y_add, "+", size=15, color=COLORS["residual"])
        arrow(ax, (cx, y_from), (cx, y_add - 0.38))
    arrow(ax, (cx, 7.2 + 0.38), (cx, 8.2), color=COLORS["residual"], lw=2)
    arrow(ax, (cx, 13.2 + 0.38), (cx, 14.9), color=COLORS["residual"], lw=2)
    # shortcuts: x goes around each sub-layer and is added back
    for y_start, y_add in ((1.75, 7.2), (7.85, 13.2)):
        ax.plot([cx, stream_x, stream_x], [y_start, y_start, y_add], color=COLORS["residual"], lw=2)
        arrow(ax, (stream_x, y_add), (cx - 0.38, y_add), color=COLORS["residual"], lw=2)
    label(ax, stream_x - 0.25, 4.5, "shortcut", size=9, rotation=90, color=COLORS["residual"])
    label(ax, stream_x - 0.25, 10.5, "shortcut", size=9, rotation=90, color=COLORS["residual"])
    label(ax, cx + w / 2 + 0.3, 7.2, "x = x + drop_resid(attn(norm1(x)))", size=8.5, ha="left", family="monospace")
    label(ax, cx + w / 2 + 0.3, 13.2, "x = x + drop_resid(ff(norm2(x)))", size=8.5, ha="left", family="monospace")
    save(fig, path)


def fig_01_gpt_model(path):
    fig, ax = canvas(18, 15.6)
    cx, w = 5.6, 6.6

    def layer(y, text, shape, color=COLORS["layer"], h=1.0):
        box(ax, cx - w / 2, y, w, h, text, color=color, size=9.5)
        if shape:
            label(ax, cx + w / 2 + 0.3, y + h / 2, shape, size=8.5, ha="left", color=COLORS["muted"])

    label(ax, 0.3, 15.1, "GPTModel(GPTConfig.from_preset(\"124M\")): shapes for a batch of token ids", ha="left",
          size=10.5)
    half = w / 2 - 0.4
    box(ax, cx - w / 2, 0.4, half, 0.9, "token_ids", color=COLORS["token"], size=9)
    box(ax, cx + 0.4, 0.4, half, 0.9, "positions\n0 … n_tokens − 1", color=COLORS["position"], size=8)
    label(ax, cx + w / 2 + 0.3, 0.85, "(batch, n_tokens), n_tokens ≤ context_length = 1,024", size=8.5, ha="left",
          color=COLORS["muted"])
    box(ax, cx - w / 2, 2.0, half, 1.0, "tok_emb\n50,257 × 768", color=COLORS["token"], size=8.5)
    box(ax, cx + 0.4, 2.0, half, 1.0, "pos_emb\n1,024 × 768", color=COLORS["position"], size=8.5)
    label(ax, cx, 2.5, "+", size=14)
    for x in (cx - w / 2 + half / 2, cx + 0.4 + half / 2):
        arrow(ax, (x, 1.3), (x, 2.0))
    label(ax, cx + w / 2 + 0.3, 2.5, "OpenAI: wte, wpe", size=8.5, ha="left", color=COLORS["muted"])
    layer(3.7, "drop_emb: Dropout", "(batch, n_tokens, 768)")
    # the stack of blocks
    for k in range(3, 0, -1):
        box(ax, cx - w / 2 + 0.18 * k, 5.4 + 0.18 * k, w, 3.0, "", size=9)
    box(ax, cx - w / 2, 5.4, w, 3.0, "", size=9)
    label(ax, cx, 7.4, "blocks: 12 × TransformerBlock", size=10, weight="bold")
    label(ax, cx, 6.5, "norm1 → attn (12 heads) → +\nnorm2 → ff (768→3072→768) → +", size=8.5)
    label(ax, cx + w / 2 + 0.9, 6.9, "(batch, n_tokens, 768) in and out;\nOpenAI: h0 ... h11", size=8.5, ha="left",
          color=COLORS["muted"])
    layer(9.4, "final_norm: LayerNorm(768)", "OpenAI: ln_f")
    layer(11.1, "out_head: Linear(768, 50,257)", "no bias; its weight is tok_emb's (OpenAI: wte)")
    layer(12.8, "logits", "(batch, n_tokens, 50,257): at every position,\na score for every possible next token",
          "white", 0.9)
    for y0, y1 in ((3.0, 3.7), (4.7, 5.4), (8.4 + 0.55, 9.4), (10.4, 11.1), (12.1, 12.8)):
        arrow(ax, (cx, y0), (cx, y1))
    arrow(ax, (cx - w / 2 - 0.2, 11.6), (cx - w / 2 - 0.2, 2.5), style="<|-|>", color=COLORS["muted"], ls="--",
          rad=0.0)
    label(ax, cx - w / 2 - 0.45, 7.0, "one shared matrix", size=8.5, rotation=90, color=COLORS["muted"])
    from gpt2_from_scratch.architecture import FeedForward, GPTConfig, count_parameters, parameter_count
    total = parameter_count(GPTConfig.from_preset("124M"))
    with torch.device("meta"):
        feed_forward_share = 12 * count_parameters(FeedForward(768)) / total
    label(ax, 0.3, 14.3, f"{total:,} parameters (section 5.1), {feed_forward_share:.0%} of them in the 12 "
          "feed-forward networks.", ha="left", size=9)
    save(fig, path)


# --------------------------------------------------------------------------- 02

def fig_02_training_loop(path):
    fig, ax = canvas(22, 11)
    w, h = 6.4, 2.0
    steps = [
        (0.5, 7.4, "next batch from train_loader:\ninput_batch, target_batch", COLORS["token"]),
        (7.8, 7.4, "optimizer.zero_grad():\nclear last step's gradients", COLORS["layer"]),
        (15.1, 7.4, "loss = calc_loss_batch(input_batch,\ntarget_batch, model, device): the\nlogits "
         "model(input_batch), then their\ncross-entropy with target_batch", COLORS["target"]),
        (15.1, 2.8, "loss.backward():\na gradient in every .grad", COLORS["layer"]),
        (0.5, 2.8, "optimizer.step():\nAdamW updates the weights", COLORS["layer"]),
    ]
    for x, y, text, color in steps:
        box(ax, x, y, w, h, text, color=color, size=9)
    for (x0, y0, *_), (x1, y1, *_) in zip(steps, steps[1:] + steps[:1]):
        if y0 == y1:
            start = (x0 + w, y0 + h / 2) if x1 > x0 else (x0, y0 + h / 2)
            end = (x1, y1 + h / 2) if x1 > x0 else (x1 + w, y1 + h / 2)
        else:
            start, end = ((x0 + w / 2, y0), (x1 + w / 2, y1 + h)) if y1 < y0 else ((x0 + w / 2, y0 + h),
                                                                                   (x1 + w / 2, y1))
        arrow(ax, start, end)
    label(ax, 11.0, 10.3, "one training step (train_model_simple, section 5)", size=10.5)
    label(ax, 11.0, 6.0, "every eval_freq steps: evaluate_model, the loss on eval_iter training and\n"
          "validation batches in eval mode (no dropout, no gradients), recorded in the history", size=8.5,
          color=COLORS["muted"])
    label(ax, 11.0, 1.3, "after each epoch: generate_sample from start_context (printed when training ends)",
          size=8.5, color=COLORS["muted"])
    save(fig, path)


def fig_02_decoding(path):
    from gpt2_from_scratch.pretraining import top_k_filter, top_p_filter
    candidates = notebook_value("02_pretraining.ipynb", "candidates")
    logits = notebook_value("02_pretraining.ipynb", "next_token_logits")
    probabilities = torch.softmax(logits, dim=-1)
    panels = [
        ("the distribution: softmax of the logits", probabilities, None),
        ("greedy: always the most likely", torch.nn.functional.one_hot(logits.argmax(), len(candidates)).float(),
         None),
        ("temperature T = 0.5: sharper", torch.softmax(logits / 0.5, dim=-1), None),
        ("temperature T = 2: flatter", torch.softmax(logits / 2.0, dim=-1), None),
        ("top-k, k = 3: three most likely, renormalised", torch.softmax(top_k_filter(logits, 3), dim=-1), None),
        ("top-p, p = 0.9: smallest set reaching 0.9", top_p_filter(probabilities, 0.9), None),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.2), sharey=True)
    for axis, (title, values, _) in zip(axes.flat, panels):
        kept = values > 0
        axis.bar(range(len(candidates)), probabilities.numpy(), color=COLORS["masked"], width=0.8,
                 label="softmax of the logits")
        axis.bar(range(len(candidates)), values.numpy(), color=np.where(kept, "#3182bd", COLORS["masked"]), width=0.5,
                 label="what the token is picked from")
        for k, value in enumerate(values.tolist()):
            if value > 0:
                axis.text(k, value + 0.02, f"{value:.2f}", ha="center", va="bottom", fontsize=7.5)
        axis.set_title(title, fontsize=10)
        axis.set_xticks(range(len(candidates)), candidates, rotation=40, fontsize=8.5)
        axis.set_ylim(0, 1.1)
        axis.spines[["top", "right"]].set_visible(False)
    axes[0, 0].set_ylabel("probability")
    axes[1, 0].set_ylabel("probability")
    axes[0, 0].legend(fontsize=8, frameon=False, loc="upper right")
    fig.suptitle("One distribution over the next word after \"The painter picked up his\", six ways to pick "
                 "from it", fontsize=11)
    fig.tight_layout()
    save(fig, path)


def fig_02_kv_cache(path):
    fig, ax = canvas(25, 11.5)
    words = ["I", "␣had", "␣always", "␣thought", "␣Jack"]  # the start of 02's check sentence
    n_past = 4
    label(ax, 0.3, 10.9, "Generating with a key/value cache: one step, for one block and one head "
          "(forward_with_cache, cached_attention)", ha="left", size=10.5)
    # tokens
    for t, word in enumerate(words):
        new = t == n_past
        box(ax, 2.0 + t * 1.6, 9.0, 1.45, 0.8, word, color=COLORS["token"] if new else "white", size=8.5,
            family="monospace", lw=2.0 if new else 1.0)
    label(ax, 0.3, 9.4, "tokens", ha="left", size=9)
    label(ax, 2.0 + n_past * 1.6 + 1.8, 9.4, "← the one new token: the only model input this step", ha="left",
          size=8.5, color=COLORS["muted"])
    rows = [("keys", COLORS["key"], 7.2), ("values", COLORS["value"], 5.7)]
    for name, color, y in rows:
        label(ax, 0.3, y + 0.4, name, ha="left", size=9)
        for t in range(n_past + 1):
            new = t == n_past
            ax.add_patch(Rectangle((2.0 + t * 1.6, y), 1.45, 0.8, facecolor=color,
                                   edgecolor=COLORS["highlight"] if new else COLORS["edge"], lw=2.2 if new else 0.8,
                                   hatch=None if new else "///", alpha=1.0 if new else 0.55))
        ax.add_patch(Rectangle((1.85, y - 0.15), n_past * 1.6, 1.1, fill=False, edgecolor=COLORS["muted"], lw=1.2,
                               ls="--"))
    label(ax, 1.85, 4.95, "layer_cache = (keys, values) of the n_past = 4 earlier tokens: read, not recomputed;",
          size=8.5, color=COLORS["muted"], ha="left")
    label(ax, 1.85, 4.5, "each (batch, n_heads, n_past, head_dim), one pair per block", size=8.5,
          color=COLORS["muted"], ha="left")
    # the new query and its attention
    qx = 2.0 + n_past * 1.6
    box(ax, qx, 3.0, 1.45, 0.8, "query", color=COLORS["query"], size=8.5, rounded=False, lw=2.2,
        edge=COLORS["highlight"])
    label(ax, 0.3, 3.4, "new query", ha="left", size=9)
    weights = torch.softmax(torch.tensor([1.5, 0.2, 0.6, 0.9, 1.2]), dim=0).numpy()
    grid(ax, 2.0, 2.0, values=weights[None, :], cmap="viridis", fmt=None, cell=1.6, cell_h=0.7)
    label(ax, 0.3, 1.65, "weights", ha="left", size=9)
    label(ax, 10.5, 1.65, "softmax(query · keys / √head_dim), then weights @ values:\nattention over n_past + 1 "
          "keys and values, the only work that grows with the text", size=8.5, ha="left", color=COLORS["muted"])
    # what is computed per step
    box(ax, 16.2, 4.7, 8.4, 4.3, "", color="white")
    label(ax, 16.5, 8.5, "computed for the new token only:", ha="left", size=9.5, weight="bold")
    label(ax, 16.5, 7.0, "• tok_emb + pos_emb at position n_past\n• norm1, qkv: its query, key and value\n"
          "• out_proj, norm2, ff (the MLP)\n• final_norm, out_head: logits for the next token", ha="left", size=9)
    label(ax, 16.5, 5.3, "attention: 1 query against n_past + 1\nkeys and values", ha="left", size=9)
    label(ax, 0.3, 0.45, "Framed in black: computed this step. Hatched: from the cache. The new key and value are "
          "appended to the cache for the next step.", ha="left", size=9.5)
    save(fig, path)


# --------------------------------------------------------------------------- 03

def fig_03_checkpoint_mapping(path):
    from gpt_download import openai_variable_shapes
    shapes = openai_variable_shapes({"n_vocab": 50257, "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12})
    rows = [
        ("model/wte", "tok_emb.weight  (and out_head.weight: tied)", "[50257, 768]", "as is"),
        ("model/wpe", "pos_emb.weight", "[1024, 768]", "as is"),
        ("model/h0/ln_1/g, b", "blocks[0].norm1.weight, .bias", "[768]", "g = gain, b = bias"),
        ("model/h0/attn/c_attn/w", "blocks[0].attn.qkv.weight", "[2304, 768]", "drop the 1, transpose"),
        ("model/h0/attn/c_attn/b", "blocks[0].attn.qkv.bias", "[2304]", "as is"),
        ("model/h0/attn/c_proj/w", "blocks[0].attn.out_proj.weight", "[768, 768]", "drop the 1, transpose"),
        ("model/h0/ln_2/g, b", "blocks[0].norm2.weight, .bias", "[768]", ""),
        ("model/h0/mlp/c_fc/w", "blocks[0].ff.expand.weight", "[3072, 768]", "drop the 1, transpose"),
        ("model/h0/mlp/c_proj/w", "blocks[0].ff.project.weight", "[768, 3072]", "drop the 1, transpose"),
        ("model/ln_f/g, b", "final_norm.weight, .bias", "[768]", ""),
    ]
    fig, ax = canvas(29, 15.5)
    label(ax, 0.3, 14.9, "OpenAI's checkpoint variables (124M) and the GPTModel parameters they are copied into "
          "(load_weights_into_gpt); h0 stands for h0 ... h11", ha="left", size=10.5)
    label(ax, 0.5, 13.9, "OpenAI (TensorFlow) name and shape", ha="left", size=9.5, weight="bold")
    label(ax, 15.0, 13.9, "our parameter and shape", ha="left", size=9.5, weight="bold")
    for k, (name, ours, our_shape, note) in enumerate(rows):
        y = 12.8 - k * 0.95
        first = name.split(",")[0]
        shape = shapes[first if first in shapes else first.rstrip("g").rstrip("/") + "/g"]
        color = COLORS["token"] if "wte" in name else COLORS["position"] if "wpe" in name else COLORS["layer"]
        box(ax, 0.4, y, 9.6, 0.75, f"{name}  {list(shape)}", color=color, size=8.5, family="monospace",
            rounded=False)
        arrow(ax, (10.1, y + 0.37), (14.8, y + 0.37), text=note, text_offset=(0, 0.22), size=7.5)
        box(ax, 14.9, y, 12.0, 0.75, f"{ours}  {our_shape}", color="white", size=8.5, family="monospace",
            rounded=False)
    # the c_attn split: the last axis holds queries, keys and values
    y = 2.6
    label(ax, 0.4, y + 0.6, "c_attn/w, [768, 2304]: its last axis is [queries | keys | values], 768 each", ha="left",
          size=9)
    for k, (name, color) in enumerate((("queries", COLORS["query"]), ("keys", COLORS["key"]),
                                       ("values", COLORS["value"]))):
        box(ax, 0.4 + k * 3.2, y - 0.9, 3.1, 0.8, name, color=color, size=8.5, rounded=False)
    label(ax, 10.3, y - 0.5, "GPTModel: transposed whole into attn.qkv.weight [2304, 768]; qkv(x).split(768, dim=-1)"
          " returns them in this order.\n01's MultiHeadAttention: np.split(w, 3, axis=-1), each part transposed into "
          "W_query, W_key, W_value [768, 768].\nSection 5 checks that both give the same attention.", ha="left",
          size=8.5)
    label(ax, 0.4, 0.35, "Weights are [1, in, out] in the checkpoint (width-1 convolutions); nn.Linear stores "
          "[out, in]. Gains and biases (also c_proj/b, c_fc/b, not drawn) keep their shapes.", ha="left", size=9)
    save(fig, path)


# --------------------------------------------------------------------------- 04

def fig_04_classification_head(path):
    tok = tokenizer()
    message = notebook_value("04_finetune_classify.ipynb", "message")
    ids = tok.encode(message)
    n_pad = 3
    fig, ax = canvas(29.5, 12.5)
    label(ax, 0.3, 11.9, f"Classifying \"{message}\" (section 4): {len(ids)} real tokens, then padding to the "
          "batch length", ha="left", size=10.5)
    cell = 1.55
    x0 = 1.8
    n = len(ids) + n_pad + 1  # one column stands for "more padding"
    for t in range(n):
        x = x0 + t * cell
        if t < len(ids):
            text, color = shown(tok.decode([ids[t]])), COLORS["token"]
        elif t == len(ids) + n_pad - 1:
            text, color = "…", "white"
        else:
            text, color = "50256", COLORS["masked"]
        box(ax, x, 10.2, cell - 0.1, 0.8, text, color=color, size=7.5, family="monospace", rounded=False)
    label(ax, 0.3, 10.6, "input", ha="left", size=9)
    # the model: frozen lower blocks, trained top
    box(ax, x0, 8.7, n * cell - 0.1, 0.9, "tok_emb + pos_emb, blocks[0] ... blocks[10]: frozen (pretrained)",
        color=COLORS["layer"], size=9)
    box(ax, x0, 7.5, n * cell - 0.1, 0.9, "blocks[11], final_norm: trained", color=COLORS["trained"], size=9)
    box(ax, x0, 6.3, n * cell - 0.1, 0.9, "out_head: Linear(768, 2), new, trained (replaces Linear(768, 50,257))",
        color=COLORS["trained"], size=9)
    arrow(ax, (x0 - 0.6, 10.6), (x0 - 0.6, 5.0))
    # logits: two per position
    for t in range(n):
        x = x0 + t * cell
        for c in range(2):
            ax.add_patch(Rectangle((x + c * (cell - 0.1) / 2, 4.6), (cell - 0.1) / 2, 0.8,
                                   facecolor="#f7f7f7", edgecolor=COLORS["edge"], lw=0.6))
    label(ax, 0.3, 5.0, "logits", ha="left", size=9)
    label(ax, x0 + n * cell + 0.2, 5.0, "(batch, n_tokens, 2)", ha="left", size=8.5, color=COLORS["muted"])
    last_real = x0 + (len(ids) - 1) * cell
    ax.add_patch(Rectangle((last_real - 0.05, 4.5), cell, 1.0, fill=False, edgecolor=COLORS["highlight"], lw=2.4))
    arrow(ax, (last_real + cell / 2, 4.5), (last_real + cell / 2, 3.0), color=COLORS["highlight"], lw=2)
    box(ax, last_real - 2.2, 1.9, 6.0, 1.0, "not spam | spam: the class", color="white", size=9)
    label(ax, last_real - 2.2, 1.3, "last_token_logits: index lengths - 1 of each row", ha="left", size=8.5,
          family="monospace")
    last = x0 + (n - 1) * cell
    ax.plot([last, last + cell - 0.1], [4.6, 5.4], color=COLORS["muted"], lw=1.5)
    ax.plot([last, last + cell - 0.1], [5.4, 4.6], color=COLORS["muted"], lw=1.5)
    label(ax, last + 0.7, 3.6, "the last position: it has read the padding,\nso its scores depend on how much "
          "there is", size=8.5, color=COLORS["muted"])
    label(ax, 0.3, 0.4, "Causal attention: only the last real token has read the whole message, and the padding "
          "after it cannot change it.", ha="left", size=9.5)
    save(fig, path)


# --------------------------------------------------------------------------- 05

def fig_05_alpaca_prompt(path):
    from gpt2_from_scratch.instruct import RESPONSE_MARKER, format_input
    entry = json.loads((REPO_ROOT / "data" / "instruction-data.json").read_text(encoding="utf-8"))[1]
    prompt = format_input(entry)
    preamble, rest = prompt.split("\n\n", 1)
    instruction_part, input_part = rest.split("\n\n", 1) if entry["input"] else (rest, "")
    pieces = [
        (preamble, "white", "preamble: the same for every example"),
        (instruction_part, COLORS["token"], "### Instruction: and entry['instruction']"),
        (input_part, "#deebf7", "### Input: and entry['input'] (only when there is one)"),
        (RESPONSE_MARKER.strip("\n"), COLORS["layer"], "RESPONSE_MARKER: the prompt ends here"),
        (entry["output"], COLORS["target"], "entry['output']: the response the model learns to write"),
        ("<|endoftext|>", COLORS["target"], "appended by custom_collate_fn: the model learns to stop"),
    ]
    fig, ax = canvas(29, 11.4)
    label(ax, 0.3, 10.9, "One training example (instruction-data.json, entry 1) in the Alpaca template", ha="left",
          size=10.5)
    y = 10.3
    for index, (text, color, note) in enumerate(pieces):
        lines = [line for paragraph in text.split("\n") for line in textwrap.wrap(paragraph, 70) or [""]]
        h = 0.55 * len(lines) + 0.35
        box(ax, 0.4, y - h, 15.5, h, "", color=color, rounded=False)
        for k, line in enumerate(lines):
            label(ax, 0.6, y - 0.45 - k * 0.55, line, ha="left", size=8.5, family="monospace")
        label(ax, 16.3, y - h / 2, note, ha="left", size=8.5, color=COLORS["muted"])
        y -= h + 0.25
        if index == 3:  # the response marker: the prompt ends here
            prompt_bottom = y + 0.25
    ax.plot([24.6, 24.8, 24.8, 24.6], [10.3, 10.3, prompt_bottom, prompt_bottom], color=COLORS["edge"], lw=1.2)
    label(ax, 25.0, (10.3 + prompt_bottom) / 2, "prompt:\nformat_input(entry)\n+ RESPONSE_MARKER", ha="left",
          size=8, rotation=0)
    label(ax, 0.4, 0.4, "At inference the model gets the prompt only and writes the rest; with mask_prompt=True the "
          "loss counts only the red part.", ha="left", size=9.5)
    save(fig, path)


def fig_05_collate_batch(path):
    from gpt2_from_scratch.instruct import custom_collate_fn
    worked_batch = notebook_value("05_finetune_instruct.ipynb", "worked_batch")
    fig, ax = canvas(23.6, 13.0)
    label(ax, 0.3, 12.5, "custom_collate_fn on 05's worked batch: three examples of 5, 2 and 3 tokens "
          "(prompt lengths 3, 1 and 2)", ha="left", size=10.5)
    cell = 1.0

    def row(x, y, values, example, prompt_length, is_target, masked_prompt):
        n_real = len(example)
        for k, value in enumerate(values):
            position = k + 1 if is_target else k  # which token of the padded example this cell holds
            if value == -100:
                in_prompt = masked_prompt and position < prompt_length and position <= n_real - 1
                color, text = COLORS["masked"], "-100"
                if in_prompt:  # a prompt target masked by mask_prompt: grey, hatched
                    ax.add_patch(Rectangle((x + k * cell * 1.3, y), cell * 1.3 - 0.08, 0.7, facecolor=color,
                                           edgecolor=COLORS["muted"], hatch="///", lw=0))
                    label(ax, x + k * cell * 1.3 + 0.6, y + 0.35, text, size=7.5, color=COLORS["text"],
                          bbox=dict(facecolor=color, edgecolor="none", pad=0.5))
                    continue
            elif position < n_real:
                color = COLORS["target"] if is_target and position >= prompt_length else COLORS["token"]
                text = str(value)
            elif position == n_real and is_target:
                color, text = "#cb181d", "50256"
            else:
                color, text = COLORS["masked"], "50256"
            ax.add_patch(Rectangle((x + k * cell * 1.3, y), cell * 1.3 - 0.08, 0.7, facecolor=color,
                                   edgecolor="white"))
            label(ax, x + k * cell * 1.3 + 0.6, y + 0.35, text, size=7.5,
                  color="white" if color == "#cb181d" else COLORS["text"])

    for column, (title, options) in enumerate((("padding only", {}), ("mask_prompt=True", {"mask_prompt": True}))):
        inputs, targets = custom_collate_fn(worked_batch, **options)
        x = 2.4 + column * 12.6
        label(ax, x + 3.0, 11.9, title, size=10, weight="bold")
        label(ax, x - 0.2, 11.3, "inputs", size=9, ha="left")
        label(ax, x - 0.2, 7.6, "targets", size=9, ha="left")
        for i, (example, prompt_length) in enumerate(worked_batch):
            row(x, 10.3 - i * 0.9, inputs[i].tolist(), example, prompt_length, False, options.get("mask_prompt"))
            row(x, 6.6 - i * 0.9, targets[i].tolist(), example, prompt_length, True, options.get("mask_prompt"))
    legend = [(COLORS["token"], "a token of the example; as a target, a prompt token (counted unless mask_prompt)"),
              (COLORS["target"], "a response token the loss counts"),
              ("#cb181d", "the appended <|endoftext|> (50256): a target, so the model learns to stop"),
              (COLORS["masked"], "padding (50256): as an input harmless, as a target -100, ignored by the loss"),
              (None, "a prompt target set to -100 by mask_prompt=True")]
    for k, (color, text) in enumerate(legend):
        hatch = "///" if color is None else None
        ax.add_patch(Rectangle((0.6, 3.0 - k * 0.55), 0.8, 0.4, facecolor=color or COLORS["masked"],
                               edgecolor=COLORS["edge"], lw=0.5, hatch=hatch))
        label(ax, 1.6, 3.2 - k * 0.55, text, ha="left", size=8.5)
    label(ax, 16.0, 2.4, "each example is padded to the longest + 1 tokens;\ninputs drop the last token, targets "
          "the first,\nso both are as long as the longest example;\ncross_entropy skips every target equal to -100", ha="left", size=8.5, color=COLORS["muted"])
    save(fig, path)


FIGURES = {
    "01_text_to_embeddings": fig_01_text_to_embeddings,
    "01_sliding_windows": fig_01_sliding_windows,
    "01_attention_weights": fig_01_attention_weights,
    "01_qkv": fig_01_qkv,
    "01_causal_mask": fig_01_causal_mask,
    "01_heads": fig_01_heads,
    "01_transformer_block": fig_01_transformer_block,
    "01_gpt_model": fig_01_gpt_model,
    "02_training_loop": fig_02_training_loop,
    "02_decoding": fig_02_decoding,
    "02_kv_cache": fig_02_kv_cache,
    "03_checkpoint_mapping": fig_03_checkpoint_mapping,
    "04_classification_head": fig_04_classification_head,
    "05_alpaca_prompt": fig_05_alpaca_prompt,
    "05_collate_batch": fig_05_collate_batch,
}


def draw(names=None, out_dir=FIGURES_DIR):
    """Draw the named figures (all by default) into out_dir as NAME.png; return their paths."""
    names = list(FIGURES) if not names else names
    unknown = [name for name in names if name not in FIGURES]
    if unknown:
        raise ValueError(f"no figure named {', '.join(unknown)}; the figures are: {', '.join(FIGURES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out_dir / f"{name}.png"
        FIGURES[name](path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="figures to draw (default: all)")
    parser.add_argument("--out", default=FIGURES_DIR, help="folder to write into (default: figures/)")
    arguments = parser.parse_args()
    for written in draw(arguments.names, arguments.out):
        print(written)
