"""The figure of 04_finetune_classify.ipynb: the classification head on the last real token."""


from matplotlib.patches import Rectangle

from figures.drawing import COLORS, arrow, box, canvas, label, notebook_value, save, shown, tokenizer


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

