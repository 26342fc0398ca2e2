"""The figures of 02_pretraining.ipynb: one training step, six ways to pick the next token from one
distribution, and a generation step with a key/value cache."""


import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from gpt2_from_scratch.pretraining import top_k_filter, top_p_filter

from figures.drawing import COLORS, arrow, box, canvas, grid, label, notebook_value, save


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

