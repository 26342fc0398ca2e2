"""The figure of 03_pretrained_weights.ipynb: OpenAI's checkpoint variables and the GPTModel parameters
they are copied into.

The names come from the one table of weight names (gpt2_support.weight_names), which loading and export
read too, and the shapes from `openai_variable_shapes`: a parameter renamed there is renamed here.
"""

import re

from gpt2_from_scratch.architecture import GPTConfig
from gpt2_from_scratch.weights import hparams_from_config
from gpt2_support.weight_names import weight_names
from gpt2_support.layout import openai_variable_shapes

from figures.drawing import COLORS, arrow, box, canvas, label, save

HPARAMS_124M = hparams_from_config(GPTConfig.from_preset("124M"))  # the size the figure shows
# The biases of the linear layers after c_attn: the figure names them in its footnote instead of drawing them.
NOT_DRAWN = ("model/h0/attn/c_proj/b", "model/h0/mlp/c_fc/b", "model/h0/mlp/c_proj/b")
TIED = {"model/wte": "out_head.weight"}  # GPT-2 ties the output head to the token embedding


def mapping_rows(shapes):
    """(OpenAI's name, our name, our shape, what loading does) for each row of the figure: the rows of the
    table of weight names for the embeddings, block 0 and the final norm, a layer norm's gain and bias
    sharing one row, and the biases in NOT_DRAWN left out. Our shape is OpenAI's, without the leading 1
    and transposed, where the table says to transpose."""
    rows = []
    for ours, openai, _, transpose in weight_names(1):
        if openai in NOT_DRAWN:
            continue
        ours = re.sub(r"^blocks\.(\d+)\.", r"blocks[\1].", ours)  # blocks[0], as 01 indexes the blocks
        shape = list(shapes[openai])
        gain = openai[:-1] + "g"
        if openai.endswith("/b") and rows and rows[-1][0] == gain:  # a layer norm's bias joins its gain's row
            explained = any(row[3] for row in rows if row[0].endswith("/g, b"))
            rows[-1] = (f"{gain}, b", f"{rows[-1][1]}, .{ours.rsplit('.', 1)[1]}", rows[-1][2],
                        "" if explained else "g = gain, b = bias")
            continue
        if transpose:
            assert shape[0] == 1, f"{openai}: a width-1 convolution's weight, [1, in, out], not {shape}"
            shape, note = shape[:0:-1], "drop the 1, transpose"
        else:
            note = "as is"
        if openai in TIED:
            ours = f"{ours}  (and {TIED[openai]}: tied)"
        rows.append((openai, ours, str(shape), note))
    return rows


def fig_03_checkpoint_mapping(path):
    shapes = openai_variable_shapes(HPARAMS_124M)
    rows = mapping_rows(shapes)
    fig, ax = canvas(29, 15.5)
    label(ax, 0.3, 14.9, "OpenAI's checkpoint variables (124M) and the GPTModel parameters they are copied into "
          f"(load_weights_into_gpt); h0 stands for h0 ... h{HPARAMS_124M['n_layer'] - 1}", ha="left", size=10.5)
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
    c_attn_shape = list(shapes["model/h0/attn/c_attn/w"][1:])
    emb_dim = c_attn_shape[0]
    qkv_name, qkv_shape = next((ours, our_shape) for name, ours, our_shape, _ in rows
                               if name == "model/h0/attn/c_attn/w")
    qkv_name = qkv_name.split("].", 1)[1]  # attn.qkv.weight, within a block
    qkv_module = qkv_name.split(".")[-2]
    y = 2.6
    label(ax, 0.4, y + 0.6, f"c_attn/w, {c_attn_shape}: its last axis is [queries | keys | values], {emb_dim} each",
          ha="left", size=9)
    for k, (name, color) in enumerate((("queries", COLORS["query"]), ("keys", COLORS["key"]),
                                       ("values", COLORS["value"]))):
        box(ax, 0.4 + k * 3.2, y - 0.9, 3.1, 0.8, name, color=color, size=8.5, rounded=False)
    label(ax, 10.3, y - 0.5, f"GPTModel: transposed whole into {qkv_name} {qkv_shape}; "
          f"{qkv_module}(x).split({emb_dim}, dim=-1) returns them in this order.\n01's MultiHeadAttention: "
          f"np.split(w, 3, axis=-1), each part transposed into W_query, W_key, W_value [{emb_dim}, {emb_dim}].\n"
          "Section 5 checks that both give the same attention.", ha="left", size=8.5)
    not_drawn = ", ".join(dict.fromkeys("/".join(name.split("/")[-2:]) for name in NOT_DRAWN))  # c_proj/b, c_fc/b
    label(ax, 0.4, 0.35, "Weights are [1, in, out] in the checkpoint (width-1 convolutions); nn.Linear stores "
          f"[out, in]. Gains and biases (also {not_drawn}, not drawn) keep their shapes.", ha="left", size=9)
    save(fig, path)
