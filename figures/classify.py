"""The figures of 04_finetune_classify.ipynb: the data from the collection to the splits, a padded batch, the
classification head on the last real token, which parameters fine-tuning trains, the metrics computed from a
confusion matrix, and LoRA's low-rank update.

The counts come from 04's own functions: the splits from load_sms_spam, balance_classes and split_rows on
data/, the padding from SpamDataset, the parameters from make_classifier and add_lora on a model on PyTorch's
meta device (shapes only), the confusion matrix from classification_metrics on the test split for a keyword
rule (keyword_rule_predictions), not the model, whose predictions need OpenAI's weights.
"""

import re

import torch
from matplotlib.patches import Rectangle

from gpt2_from_scratch.architecture import GPTConfig, GPTModel, count_parameters, load_gpt2_tokenizer
from gpt2_from_scratch.classify import (LABELS, LinearWithLoRA, SpamDataset, add_lora, balance_classes,
                                        classification_metrics, count_trainable, load_sms_spam, make_classifier,
                                        split_rows)

from figures.drawing import COLORS, REPO_ROOT, arrow, box, canvas, label, notebook_value, save, shown, tokenizer


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



# --------------------------------------------------------------------------- the data (section 1)

HAM_COLOR, SPAM_COLOR = COLORS["input"], COLORS["query"]  # the two classes, in every figure of 04


def class_bar(ax, x, y, rows, scale, height=0.9, size=8.5):
    """A horizontal bar of `rows`, ham then spam, each part len * scale long, its count written inside."""
    for label_name, color in (("ham", HAM_COLOR), ("spam", SPAM_COLOR)):
        count = sum(row[0] == label_name for row in rows)
        text = f"{count:,} {label_name}" if count * scale > 2.0 else f"{count:,}"  # a narrow part: the count only
        box(ax, x, y, count * scale, height, text, color=color, size=size, rounded=False)
        x += count * scale
    return x


def fig_04_data_pipeline(path):
    messages = load_sms_spam(REPO_ROOT / "data" / "sms_spam_collection" / "SMSSpamCollection")
    balanced = balance_classes(messages)
    splits = dict(zip(("training", "validation", "test"), split_rows(balanced)))
    fig, ax = canvas(28.5, 12.2)
    label(ax, 0.3, 11.6, "From the SMS Spam Collection to the three splits (section 1), counted with 04's "
          "load_sms_spam, balance_classes and split_rows", ha="left", size=10.5)
    x0, width = 6.2, 21.8
    scale = width / len(messages)
    label(ax, 0.3, 10.05, f"{len(messages):,} messages\nload_sms_spam", ha="left", size=9)
    class_bar(ax, x0, 9.6, messages, scale)
    balanced_end = x0 + len(balanced) * scale
    arrow(ax, (x0 + 3.0, 9.5), (x0 + 3.0, 7.9))
    label(ax, x0 + 3.3, 8.7, "balance_classes(seed=123): every spam message, and as many ham messages drawn at random",
          ha="left", size=8.5, color=COLORS["muted"])
    label(ax, 0.3, 7.45, f"{len(balanced):,} messages\nbalanced", ha="left", size=9)
    class_bar(ax, x0, 7.0, balanced, scale, size=7.5)
    left_out = len(messages) - len(balanced)
    box(ax, balanced_end, 7.0, left_out * scale, 0.9, f"{left_out:,} ham messages left out", color="white",
        size=8.5, rounded=False, text_color=COLORS["muted"], hatch="//", edge=COLORS["masked"])
    # the balanced bar again, zoomed to the full width, cut into the splits
    ax.plot([x0, x0], [7.0, 4.4], color=COLORS["muted"], lw=0.8, ls="--")
    ax.plot([balanced_end, x0 + width], [7.0, 4.4], color=COLORS["muted"], lw=0.8, ls="--")
    label(ax, x0 + 0.3, 5.7, "split_rows(seed=123): shuffle, then the first 70% for training,\nthe next 10% for "
          "validation, the rest for test (drawn wider)", ha="left", size=8.5, color=COLORS["muted"])
    label(ax, 0.3, 3.95, f"{len(balanced):,} messages\nsplit", ha="left", size=9)
    zoom = width / len(balanced)
    x = x0
    for name, rows in splits.items():
        end = class_bar(ax, x, 3.5, rows, zoom, size=7.5)
        ax.add_patch(Rectangle((x, 3.5), end - x, 0.9, fill=False, edgecolor=COLORS["highlight"], lw=1.6))
        label(ax, (x + end) / 2, 2.9, f"{name}: {len(rows):,}", size=9, weight="bold")
        x = end
    batch_size = notebook_value("04_finetune_classify.ipynb", "BATCH_SIZE")
    steps, unused = divmod(len(splits["training"]), batch_size)
    label(ax, 0.3, 1.3, f"Training batches of {batch_size}, shuffled each epoch, with drop_last=True: {steps} steps "
          f"per epoch; the {unused} messages that come last in an epoch's shuffled order are left out of that epoch.",
          ha="left", size=9)
    save(fig, path)


# --------------------------------------------------------------------------- which parameters train (section 3)

def meta_classifier_124m(lora=False):
    """04's classifier of GPT-2 124M on PyTorch's meta device (shapes only, no memory), with LoRA if asked."""
    with torch.device("meta"):
        model = make_classifier(GPTModel(GPTConfig.from_preset("124M", drop_rate=0.0)))
        return add_lora(model, rank=LORA_RANK, alpha=LORA_ALPHA) if lora else model


def parameter_rows(model):
    """(name, trainable count, frozen count) for each top-level part of the model and each block."""
    parts = [("tok_emb", model.tok_emb), ("pos_emb", model.pos_emb)]
    parts += [(f"blocks[{index}]", block) for index, block in enumerate(model.blocks)]
    parts += [("final_norm", model.final_norm), ("out_head", model.out_head)]
    rows = []
    for name, module in parts:
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        rows.append((name, trainable, sum(p.numel() for p in module.parameters()) - trainable))
    return rows


def fig_04_trainable_parameters(path):
    model = meta_classifier_124m()
    rows = parameter_rows(model)
    assert sum(t + f for _, t, f in rows) == count_parameters(model)  # every parameter is in one row
    fig, ax = canvas(21.5, 15.0)
    label(ax, 0.3, 14.4, "GPT-2 124M after make_classifier (section 3): which parameters fine-tuning updates",
          ha="left", size=10.5)
    x0, row_h = 4.2, 0.62
    scale = 12.5 / max(t + f for _, t, f in rows)
    for k, (name, trainable, frozen) in enumerate(rows):
        y = 13.3 - k * row_h
        label(ax, x0 - 0.2, y + row_h / 2 - 0.05, name, ha="right", size=8.5, family="monospace")
        color = COLORS["trained"] if trainable else COLORS["layer"]
        width = max((trainable + frozen) * scale, 0.08)  # the norms and the head are too small to see to scale
        ax.add_patch(Rectangle((x0, y), width, row_h - 0.12, facecolor=color, edgecolor=COLORS["edge"], lw=0.6))
        state = "trained" if trainable else "frozen"
        label(ax, x0 + width + 0.2, y + row_h / 2 - 0.05, f"{trainable + frozen:,} {state}", ha="left", size=8.5)
    total, trainable = count_parameters(model), count_trainable(model)
    y = 13.3 - len(rows) * row_h - 0.6
    label(ax, x0 - 0.2, y + row_h / 2 - 0.05, "all", ha="right", size=8.5, family="monospace")
    whole = 12.5 / total
    ax.add_patch(Rectangle((x0, y), (total - trainable) * whole, row_h - 0.12, facecolor=COLORS["layer"],
                           edgecolor=COLORS["edge"], lw=0.6))
    ax.add_patch(Rectangle((x0 + (total - trainable) * whole, y), trainable * whole, row_h - 0.12,
                           facecolor=COLORS["trained"], edgecolor=COLORS["edge"], lw=0.6))
    label(ax, x0 + 12.7, y + row_h / 2 - 0.05, f"{total:,}", ha="left", size=8.5)
    label(ax, x0, y - 0.45, f"frozen (requires_grad = False): {total - trainable:,};  trained: {trainable:,}, "
          f"{trainable / total:.1%} of {total:,}", ha="left", size=8.5)
    note = (f"Bars to scale (the whole model's on a scale of its own); final_norm's {rows[-2][1]:,} and out_head's "
            f"{rows[-1][1]:,} parameters\nare drawn as slivers. The new out_head is not tied to tok_emb, so tok_emb stays frozen: it only embeds the input.")
    label(ax, 0.3, 0.75, note, ha="left", size=8.5, color=COLORS["muted"])
    save(fig, path)


# --------------------------------------------------------------------------- LoRA (section 10)

LORA_RANK, LORA_ALPHA = 16, 16  # as 04's section 10 calls add_lora(..., rank=16, alpha=16)


def fig_04_lora_update(path):
    model = meta_classifier_124m(lora=True)
    wrapped = [(name, module) for name, module in model.blocks[0].named_modules() if isinstance(module, LinearWithLoRA)]
    name, layer = wrapped[0]  # the first wrapped layer, drawn large
    d_in, d_out = layer.linear.in_features, layer.linear.out_features
    rank = layer.lora.A.shape[1]
    fig, ax = canvas(23.5, 15.4)
    label(ax, 0.3, 14.8, f"LoRA on one layer of GPT-2 124M (section 10): blocks[0].{name}, {d_in} inputs, {d_out} "
          f"outputs,\nrank r = {rank}, alpha = {LORA_ALPHA}; the same on every nn.Linear of every block", ha="left",
          size=10.5)
    unit = 3.2 / d_in  # drawing units per row or column of a matrix: W's d_in rows are 3.2 units tall
    thick = 0.45  # r = 16 rows or columns would be 0.07 units: A and B are drawn thicker than to scale
    x_w, top = 4.0, 13.2
    w_width, w_height = d_out * unit, d_in * unit
    # the frozen path: x W^T + b
    box(ax, 0.3, top - w_height / 2 - 0.5, 2.6, 1.0, f"x\n(…, {d_in})", color=COLORS["input"], size=9)
    arrow(ax, (2.9, top - w_height / 2), (x_w, top - w_height / 2))
    box(ax, x_w, top - w_height, w_width, w_height, f"Wᵀ, frozen: {d_in} × {d_out} (nn.Linear stores W, {d_out} × {d_in})\n"
        f"{layer.linear.weight.numel():,} numbers, and a bias of {layer.linear.bias.numel():,}", color=COLORS["layer"], size=9, rounded=False)
    plus_x = x_w + w_width + 1.0
    box(ax, plus_x, top - w_height / 2 - 0.5, 1.0, 1.0, "+", color="white", size=12)
    arrow(ax, (x_w + w_width, top - w_height / 2), (plus_x, top - w_height / 2))
    box(ax, plus_x + 1.8, top - w_height / 2 - 0.5, 2.6, 1.0, f"y\n(…, {d_out})", color=COLORS["input"], size=9)
    arrow(ax, (plus_x + 1.0, top - w_height / 2), (plus_x + 1.8, top - w_height / 2))
    # the trained path: (alpha / r) x A B, A tall and thin, B flat and wide: their product has W's shape
    low = top - w_height - 1.0
    box(ax, x_w, low - w_height, thick, w_height, "A", color=COLORS["trained"], size=8.5, rounded=False)
    box(ax, x_w + thick + 0.15, low - thick, w_width - thick - 0.15, thick, "B", color=COLORS["trained"], size=8.5,
        rounded=False)
    label(ax, x_w + thick + 0.4, low - thick - 0.6, f"A: {d_in} × {rank} = {layer.lora.A.numel():,} numbers, random "
          "at the start (kaiming_uniform_)", ha="left", size=8.5)
    label(ax, x_w + thick + 0.4, low - thick - 1.3, f"B: {rank} × {d_out} = {layer.lora.B.numel():,} numbers, zero "
          "at the start,", ha="left", size=8.5)
    label(ax, x_w + thick + 0.4, low - thick - 1.9, "so the layer starts as exactly the pretrained one",
          ha="left", size=8.5)
    label(ax, x_w + thick + 0.4, low - thick - 2.6, "(A and B drawn thicker than to scale)", ha="left", size=8.5,
          color=COLORS["muted"])
    arrow(ax, (1.6, top - w_height / 2 - 0.5), (1.6, low - w_height / 2))
    arrow(ax, (1.6, low - w_height / 2), (x_w, low - w_height / 2))
    scale_y = low - thick / 2
    box(ax, plus_x - 0.2, scale_y - 0.5, 1.4, 1.0, f"× {layer.lora.scaling:g}", color="white", size=9)
    arrow(ax, (x_w + w_width, scale_y), (plus_x - 0.2, scale_y))
    arrow(ax, (plus_x + 0.5, scale_y + 0.5), (plus_x + 0.5, top - w_height / 2 - 0.5))
    label(ax, plus_x + 1.4, scale_y, f"alpha / r = {LORA_ALPHA} / {rank}", ha="left", size=8.5,
          color=COLORS["muted"])
    y = low - w_height - 0.9
    label(ax, 0.3, y, f"y = x Wᵀ + b + (alpha / r) · x A B: the layer trains r · (d_in + d_out) = {rank} · ({d_in} + "
          f"{d_out}) = {layer.lora.A.numel() + layer.lora.B.numel():,} numbers instead of "
          f"{layer.linear.weight.numel() + layer.linear.bias.numel():,}", ha="left", size=9.5)
    per_block = 0
    label(ax, 0.3, y - 0.9, "The four wrapped layers of each block (add_lora):", ha="left", size=9)
    for k, (layer_name, wrapped_layer) in enumerate(wrapped):
        count = wrapped_layer.lora.A.numel() + wrapped_layer.lora.B.numel()
        per_block += count
        label(ax, 0.8, y - 1.6 - k * 0.6, f"{layer_name:14} {rank} · ({wrapped_layer.linear.in_features:>4} + "
              f"{wrapped_layer.linear.out_features:>4}) = {count:>6,}", ha="left", size=8.5, family="monospace")
    head = sum(p.numel() for p in model.out_head.parameters() if p.requires_grad)
    total, trainable = count_parameters(model), count_trainable(model)
    assert trainable == model.cfg.n_layers * per_block + head  # nothing else trains
    label(ax, 0.3, y - 4.3, f"per block {per_block:,}; × {model.cfg.n_layers} blocks = {model.cfg.n_layers * per_block:,};"
          f" + out_head's {head:,} (new, trained in full) = {trainable:,} trainable of {total:,} ({trainable / total:.1%})",
          ha="left", size=9.5)
    save(fig, path)


# --------------------------------------------------------------------------- metrics (section 7)

def keyword_rule_predictions(rows):
    """A stand-in classifier for the figure, not the model: spam (1) when a message contains "free" (any case)
    or five digits in a row, as phone numbers and short codes do; ham (0) otherwise."""
    return torch.tensor([int("free" in text.lower() or re.search(r"\d{5}", text) is not None) for _, text in rows])


def fig_04_confusion_metrics(path):
    messages = load_sms_spam(REPO_ROOT / "data" / "sms_spam_collection" / "SMSSpamCollection")
    test_rows = split_rows(balance_classes(messages))[2]
    labels = torch.tensor([LABELS.index(row[0]) for row in test_rows])
    metrics = classification_metrics(keyword_rule_predictions(test_rows), labels)
    (tn, fp), (fn, tp) = metrics["confusion"].tolist()
    fig, ax = canvas(28.5, 12.6)
    label(ax, 0.3, 12.0, f"The four counts and what is computed from them, on 04's test split ({len(test_rows)} "
          "messages), for a keyword rule, not the fine-tuned model:", ha="left", size=10.5)
    label(ax, 0.3, 11.35, "spam when the text contains \"free\" or five digits in a row. classification_metrics counted "
          "it; the model's own matrix needs OpenAI's weights.", ha="left", size=10.5)
    cell, x0, top = 2.6, 4.4, 9.4
    names = {(0, 0): ("true negative", tn), (0, 1): ("false positive", fp), (1, 0): ("false negative", fn),
             (1, 1): ("true positive", tp)}
    for (row, column), (name, count) in names.items():
        color = "#deebf7" if row != column else COLORS["token"]
        box(ax, x0 + column * cell, top - (row + 1) * cell, cell, cell, f"{count}\n{name}", color=color, size=9,
            rounded=False)
    for k, class_name in enumerate(LABELS):
        label(ax, x0 + (k + 0.5) * cell, top + 0.35, class_name, size=9)
        label(ax, x0 - 0.25, top - (k + 0.5) * cell, class_name, ha="right", size=9)
    label(ax, x0 + cell, top + 1.0, "predicted", size=9.5, weight="bold")
    label(ax, x0 - 2.3, top - cell, "true", size=9.5, weight="bold", rotation=90)
    # precision reads the "predicted spam" column, recall the "true spam" row
    ax.add_patch(Rectangle((x0 + cell + 0.08, top - 2 * cell + 0.08), cell - 0.16, 2 * cell - 0.16, fill=False,
                           edgecolor=COLORS["residual"], lw=2.2))
    ax.add_patch(Rectangle((x0 + 0.08, top - 2 * cell + 0.12), 2 * cell - 0.16, cell - 0.24, fill=False,
                           edgecolor=COLORS["highlight"], lw=2.2, ls="--"))
    label(ax, x0 + cell, top - 2 * cell - 0.6, "positive class: spam (index 1)", size=8.5, color=COLORS["muted"])
    x, y = 11.6, 9.0
    lines = [
        ("precision", "TP / (TP + FP)", f"{tp} / ({tp} + {fp})", f"{metrics['precision']:.1%}",
         "of the messages flagged as spam, the share that are spam (the red column)", COLORS["residual"]),
        ("recall", "TP / (TP + FN)", f"{tp} / ({tp} + {fn})", f"{metrics['recall']:.1%}",
         "of the spam messages, the share that are flagged (the dashed row)", COLORS["text"]),
        ("F1", "2 · P · R / (P + R)", f"2 · {metrics['precision']:.3f} · {metrics['recall']:.3f} / "
         f"({metrics['precision']:.3f} + {metrics['recall']:.3f})", f"{metrics['f1']:.3f}",
         "the harmonic mean of precision (P) and recall (R): high only when both are", COLORS["text"]),
        ("accuracy", "(TP + TN) / all", f"({tp} + {tn}) / {tn + fp + fn + tp}", f"{metrics['accuracy']:.1%}",
         "the diagonal: every right answer, either class", COLORS["text"]),
    ]
    for k, (name, formula, numbers, value, meaning, color) in enumerate(lines):
        row_y = y - k * 1.75
        label(ax, x, row_y, f"{name} = {formula} = {numbers} = {value}", ha="left", size=9.5, color=color,
              weight="bold")
        label(ax, x, row_y - 0.6, meaning, ha="left", size=8.5, color=COLORS["muted"])
    label(ax, 0.3, 0.8, f"This rule throws away {fp} real message{'s' if fp != 1 else ''} and lets {fn} spam "
          "messages through: high precision, lower recall. Accuracy alone would not say which mistakes it makes.",
          ha="left", size=9)
    save(fig, path)


# --------------------------------------------------------------------------- padding (section 2)

def fig_04_padded_batch(path):
    messages = load_sms_spam(REPO_ROOT / "data" / "sms_spam_collection" / "SMSSpamCollection")
    train_rows = split_rows(balance_classes(messages))[0]
    gpt2_tokenizer = load_gpt2_tokenizer(REPO_ROOT / "data" / "gpt2-tokenizer", REPO_ROOT / ".cache" / "tiktoken")
    full_train = SpamDataset(train_rows, gpt2_tokenizer)  # as 04 builds it (tiktoken's GPT-2 encoding)
    batch_size = notebook_value("04_finetune_classify.ipynb", "BATCH_SIZE")
    length = full_train.max_length
    fig, ax = canvas(28.0, 9.6)
    label(ax, 0.3, 9.0, f"The first {batch_size} training messages as SpamDataset stores them (section 2): "
          f"padded with 50256 to {length} tokens, the longest training message", ha="left", size=10.5)
    x0, scale, row_h = 3.2, 20.0 / length, 0.72
    for k in range(batch_size):
        ids, label_index, real = full_train[k]
        real = real.item()
        y = 7.7 - k * row_h
        label(ax, x0 - 0.2, y + 0.28, f"row {k}", ha="right", size=8.5)
        box(ax, x0, y, real * scale, row_h - 0.16, "", color=COLORS["token"], rounded=False, lw=0.6)
        box(ax, x0 + real * scale, y, (length - real) * scale, row_h - 0.16, "", color=COLORS["masked"],
            rounded=False, lw=0.6)
        ax.add_patch(Rectangle((x0 + (real - 1) * scale, y - 0.04), scale, row_h - 0.08, fill=False,
                               edgecolor=COLORS["highlight"], lw=1.8))
        label(ax, x0 + length * scale + 0.3, y + 0.28, f"{LABELS[label_index]}, {real} real + {length - real} padding",
              ha="left", size=8.5)
    label(ax, x0, 7.7 + row_h + 0.05, "token 0", ha="left", size=8, color=COLORS["muted"])
    label(ax, x0 + length * scale, 7.7 + row_h + 0.05, f"token {length - 1}", ha="right", size=8,
          color=COLORS["muted"])
    legend_y = 1.3
    for k, (color, text) in enumerate(((COLORS["token"], "the message's own tokens"),
                                       (COLORS["masked"], "padding, <|endoftext|> (50256)"))):
        ax.add_patch(Rectangle((x0 + k * 8.0, legend_y), 0.8, 0.4, facecolor=color, edgecolor=COLORS["edge"], lw=0.6))
        label(ax, x0 + k * 8.0 + 1.0, legend_y + 0.2, text, ha="left", size=8.5)
    ax.add_patch(Rectangle((x0 + 16.5, legend_y - 0.02), 0.4, 0.44, fill=False, edgecolor=COLORS["highlight"], lw=1.8))
    label(ax, x0 + 17.1, legend_y + 0.2, "the last real token, index length - 1", ha="left", size=8.5)
    ends_in_padding = (full_train.lengths < length).sum().item()
    label(ax, 0.3, 0.45, f"{ends_in_padding:,} of the {len(full_train):,} training rows end in padding, so the class "
          "is read at each row's last real token, not at the last position (section 4).", ha="left", size=9)
    save(fig, path)
