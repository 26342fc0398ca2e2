"""The figures of 01_architecture.ipynb: from text to token ids and embeddings, attention step by step
(weights, queries/keys/values, the causal mask, heads), the transformer block and the whole model."""


import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle

from gpt2_from_scratch.architecture import (FeedForward, GPTConfig, SelfAttention, count_parameters,
                                            parameter_count)

from figures.drawing import COLORS, REPO_ROOT, arrow, box, canvas, grid, label, notebook_value, save, shown, tokenizer


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
    fig, ax = canvas(26, 10.9)
    top = 9.1
    grid(ax, 2.6, top, values=scores, color="white", row_labels=words, col_labels=words,
         title="scores = queries @ keys.T / √2")
    arrow(ax, (9.0, top - 3), (10.4, top - 3), text="masked_fill\n(causal_mask,\n−∞)", text_offset=(0, 1.2))
    grid(ax, 10.8, top, values=scores, color="white", masked=causal_mask.numpy(), mask_text="−∞",
         col_labels=words, title="above the diagonal: the future")
    arrow(ax, (17.2, top - 3), (18.6, top - 3), text="softmax\nalong\neach row", text_offset=(0, 1.2))
    grid(ax, 19.0, top, values=masked_weights, cmap="viridis", masked=causal_mask.numpy(), mask_text="0",
         col_labels=words, title="masked_weights: zero on the future,\neach row still sums to 1")
    ax.add_patch(Rectangle((0.3, 1.05), 0.6, 0.5, facecolor=COLORS["masked"], edgecolor="white", lw=1.0))
    label(ax, 1.1, 1.3, "masked: the future of each row's token, −∞ before the softmax and exactly 0 after it "
          "(grey, apart from the colour scale of the weights)", ha="left", size=9)
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

    def stack(x, y, colors, w=1.6, h=1.4, step=0.12):  # one (n_tokens x 64) matrix per head, all twelve
        for head in range(n_heads):  # head 0 at the back, head 11 in front
            ax.add_patch(Rectangle((x + head * step, y + head * step), w, h, facecolor=colors[head],
                                   edgecolor=COLORS["edge"], lw=0.8))
        front = (n_heads - 1) * step
        label(ax, x + front + w / 2, y + front + h / 2, f"{n_heads} heads", size=8)

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
    label(ax, 8.26, 3.0, "(batch, 12, n_tokens, 64):\nan n_tokens × 64 matrix per head", size=8.5)
    arrow(ax, (10.3, 5.4), (13.8, 5.4), text="scaled_dot_product_attention\n(is_causal=True),\n"
          "each head on its own", text_offset=(0, 1.0))
    stack(14.3, 4.2, [COLORS["value"]] * n_heads)
    label(ax, 15.76, 3.0, "context:\n(batch, 12, n_tokens, 64)", size=8.5)
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
    total = parameter_count(GPTConfig.from_preset("124M"))
    with torch.device("meta"):
        feed_forward_share = 12 * count_parameters(FeedForward(768)) / total
    label(ax, 0.3, 14.3, f"{total:,} parameters (section 5.1), {feed_forward_share:.0%} of them in the 12 "
          "feed-forward networks.", ha="left", size=9)
    save(fig, path)

