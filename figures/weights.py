"""The figures of 03_pretrained_weights.ipynb: the files of one size as OpenAI published them, the loading
flow, the layout of a model.safetensors file, weight tying, and OpenAI's checkpoint variables with the
GPTModel parameters they are copied into.

The names come from the one table of weight names (gpt2_support.weight_names), which loading and export
read too, the shapes from `openai_variable_shapes`, the files, sizes and hashes from gpt2_support.catalogue,
the tokenizer's sizes from the repository's copy of its files, the parameter counts from 01's
`parameter_count`, and the functions' names from the functions themselves: a change there changes the figure.
"""

import dataclasses
import json
import math
import re

import numpy as np
import torch

from gpt2_from_scratch.architecture import GPTConfig, GPTModel, parameter_count
from gpt2_from_scratch.weights import (config_from_hparams, gpt_for_checkpoint, hparams_from_config,
                                       load_weights_into_gpt, write_gpt2_safetensors)
from gpt2_support.catalogue import DATA_FILE, FILES, KNOWN_HPARAMS, KNOWN_SIZES, TOKENIZER_DIR, known_sha256
from gpt2_support.ensure import ensure_gpt2_files
from gpt2_support.tf_checkpoint import load_gpt2_params_from_tf_ckpt
from gpt2_support.weight_names import weight_names
from gpt2_support.layout import openai_variable_shapes
from gpt_download import download_and_load_gpt2

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


# --------------------------------------------------------------------------- the files of one size

def file_rows(model_size="124M"):
    """(file name, what it holds) for each file of OpenAI's folder, in the downloader's order (FILES), with
    the numbers taken from the catalogue, the layout and the repository's copy of the tokenizer."""
    hparams = KNOWN_HPARAMS[model_size]
    shapes = openai_variable_shapes(hparams)
    numbers = sum(math.prod(shape) for shape in shapes.values())
    data_bytes = KNOWN_SIZES[(model_size, DATA_FILE)]
    assert data_bytes == 4 * numbers, "the data file holds every number of the checkpoint as float32, and nothing else"
    vocabulary = len(json.loads((TOKENIZER_DIR / "encoder.json").read_text(encoding="utf-8")))
    merges = (TOKENIZER_DIR / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]  # after "#version: 0.2"
    assert vocabulary == hparams["n_vocab"]
    what = {
        "checkpoint": 'which checkpoint is current: two text lines, model_checkpoint_path: "model.ckpt" and '
                      'all_model_checkpoint_paths: "model.ckpt"',
        "encoder.json": f"the tokenizer: its {vocabulary:,} tokens and their ids (the same file for every size)",
        "hparams.json": f"the model's shape: {json.dumps(hparams)}",
        DATA_FILE: f"every weight, as raw float32 numbers: {numbers:,} numbers × 4 bytes = {data_bytes:,} bytes",
        "model.ckpt.index": f"a sorted table with an entry for each of the {len(shapes)} variables: its dtype, shape, "
                            "where its bytes lie\nin the data file, and their CRC32C checksum",
        "model.ckpt.meta": "TensorFlow's graph of the model: not needed to read the weights",
        "vocab.bpe": f"the tokenizer's {len(merges):,} merges (the same file for every size)",
    }
    assert set(what) == set(FILES)
    return [(name, what[name]) for name in FILES]


def fig_03_openai_files(path):
    model_size = "124M"
    rows = file_rows(model_size)
    read = ("hparams.json", "model.ckpt.index", DATA_FILE)  # what load_gpt2_params_from_tf_ckpt reads
    colors = {"encoder.json": COLORS["token"], "vocab.bpe": COLORS["token"], "hparams.json": COLORS["position"],
              DATA_FILE: COLORS["layer"], "model.ckpt.index": COLORS["layer"], "model.ckpt.meta": COLORS["masked"]}
    fig, ax = canvas(31, 12.6)
    label(ax, 0.3, 12.0, f"One size's folder as OpenAI published it: models/gpt2/{model_size}/, seven files "
          "(download_and_load_gpt2 adds manifest.json)", ha="left", size=10.5)
    for k, (name, what) in enumerate(rows):
        y = 10.2 - k * 1.3
        box(ax, 0.4, y, 8.6, 1.0, name, color=colors.get(name, "white"), size=9, family="monospace",
            rounded=False, weight="bold" if name in read else "normal")
        label(ax, 9.5, y + 0.5, what, ha="left", size=8.8)
    all_known = all(known_sha256(model_size, name) for name in FILES)
    label(ax, 0.4, 0.95, f"Bold: what loading reads (no TensorFlow): {download_and_load_gpt2.__name__} reads "
          f"hparams.json, and {load_gpt2_params_from_tf_ckpt.__name__} the index, whose offsets and checksums",
          ha="left", size=9)
    label(ax, 0.4, 0.35, "lead it to each tensor in the data file. "
          f"{'The SHA-256 of all seven' if all_known else 'The SHA-256 of some'} {model_size} files is known "
          "(gpt2_support.catalogue): the downloader checks each file against it.", ha="left", size=9)
    save(fig, path)


# --------------------------------------------------------------------------- the Hub's model.safetensors

def safetensors_header(shapes, metadata):
    """The JSON header safetensors writes for float32 tensors of these shapes ({name: shape}): the metadata
    first, then the tensors sorted by name, each with its [start, end) bytes after the header; compact JSON
    padded with spaces to a multiple of 8 bytes. Returns (header bytes, {name: (start, end)})."""
    header, offsets, start = {"__metadata__": metadata}, {}, 0
    for name in sorted(shapes):
        end = start + 4 * math.prod(shapes[name])
        header[name] = {"dtype": "F32", "shape": list(shapes[name]), "data_offsets": [start, end]}
        offsets[name], start = (start, end), end
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return text + b" " * (-len(text) % 8), offsets


def check_safetensors_header():
    """safetensors_header must be byte for byte what safetensors itself writes: checked on a tiny GPT-2's
    tensors (the Hub's names), as write_gpt2_safetensors saves them (metadata {"format": "pt"})."""
    from safetensors.numpy import save

    tiny = {"n_vocab": 10, "n_ctx": 8, "n_embd": 4, "n_head": 2, "n_layer": 2}
    shapes = hub_shapes(tiny)
    written = save({name: np.zeros(shape, np.float32) for name, shape in shapes.items()}, metadata={"format": "pt"})
    length = int.from_bytes(written[:8], "little")
    assert written[8:8 + length] == safetensors_header(shapes, {"format": "pt"})[0], "safetensors writes another header"


def hub_shapes(hparams):
    """{the Hub's tensor name: its shape} for these hparams: OpenAI's shapes without the leading 1 of the weights."""
    shapes = openai_variable_shapes(hparams)
    return {hub: shapes[openai][1:] if len(shapes[openai]) == 3 else shapes[openai]
            for _, openai, hub, _ in weight_names(hparams["n_layer"])}


def fig_03_safetensors_layout(path):
    check_safetensors_header()
    shapes = hub_shapes(HPARAMS_124M)
    header, offsets = safetensors_header(shapes, {"format": "pt"})
    data_bytes = 4 * sum(math.prod(shape) for shape in shapes.values())
    assert data_bytes == KNOWN_SIZES[("124M", DATA_FILE)]  # the same numbers as OpenAI's data file
    fig, ax = canvas(31, 12.2)
    label(ax, 0.3, 11.6, f"model.safetensors for 124M as {write_gpt2_safetensors.__name__} writes it (section 9); "
          "every safetensors file has these three parts", ha="left", size=10.5)
    parts = [(0.4, 3.6, "8 bytes: N,\nthe header's length", "white"),
             (4.0, 7.2, f"JSON header: N = {len(header):,} bytes", "#fffbea"),
             (11.2, 19.2, f"the tensors' bytes: {data_bytes:,} (float32, back to back)", COLORS["layer"])]
    for x, w, text, color in parts:
        box(ax, x, 9.0, w, 1.5, text, color=color, size=9, rounded=False)
    for x, text in ((0.4, "0"), (4.0, "8"), (11.2, "8 + N"), (30.4, f"{8 + len(header) + data_bytes:,} bytes")):
        label(ax, x, 8.65, text, ha="left" if x < 30 else "right", size=8, color=COLORS["muted"])
    label(ax, 0.4, 7.8, "N: an unsigned\n64-bit integer,\nlittle-endian", ha="left", size=8.5, va="top")
    # the header, entry by entry: its first tensors and its last
    entries = json.loads(header)
    names = [name for name in entries if name != "__metadata__"]
    shown = names[:3] + names[-1:]
    lines = ['{"__metadata__":{"format":"pt"},']
    lines += [f'"{name}":{json.dumps(entries[name], separators=(",", ":"))},' for name in shown[:3]]
    lines += [f"... {len(names) - len(shown)} more, sorted by name ...",
              f'"{shown[-1]}":{json.dumps(entries[shown[-1]], separators=(",", ":"))}}}']
    box(ax, 4.0, 2.6, 26.4, 5.3, "", color="#fffbea", rounded=False)
    for k, line in enumerate(lines):
        label(ax, 4.3, 7.35 - k * 0.85, line, ha="left", size=8.5, family="monospace")
    arrow(ax, (7.6, 9.0), (7.6, 7.95))
    first, last = offsets[shown[0]], offsets[shown[-1]]
    label(ax, 4.0, 1.9, f"Each entry: dtype, shape, and the tensor's bytes [start, end) counted from 8 + N "
          f"({shown[0]}: {first[0]:,} to {first[1]:,}; {shown[-1]} ends at {last[1]:,}).", ha="left", size=9)
    label(ax, 4.0, 1.2, "The names are the Hub's (section 5); the weights are [in, out], without OpenAI's leading 1. "
          "No checksum is stored: the downloader checks the file's SHA-256.", ha="left", size=9)
    label(ax, 4.0, 0.5, f"The Hub's own 124M file is {KNOWN_SIZES[('124M', 'model.safetensors')]:,} bytes "
          f"(gpt2_support.catalogue); the reader takes these {len(names)} tensors from it and skips any that is "
          "not a weight (section 5).", ha="left", size=9)
    save(fig, path)


# --------------------------------------------------------------------------- weight tying

def fig_03_weight_tying(path):
    config = config_from_hparams(HPARAMS_124M)
    with torch.device("meta"):
        model = GPTModel(config)
    assert model.out_head.weight is model.tok_emb.weight, "GPT-2's output head is its token embedding"
    vocab, emb_dim = model.tok_emb.weight.shape
    shared = vocab * emb_dim
    tied, untied = parameter_count(config), parameter_count(dataclasses.replace(config, tie_weights=False))
    assert untied - tied == shared
    fig, ax = canvas(31, 12.2)
    label(ax, 0.3, 11.6, "Weight tying in GPT-2 124M: the token embedding and the output head are one tensor",
          ha="left", size=10.5)
    label(ax, 0.6, 10.6, "A row of W is a token's input vector; the same row, dotted with the last hidden vector, "
          "is that token's score (its logit).", ha="left", size=9.5)
    label(ax, 0.6, 9.8, "The checkpoint has no output head: it stores the matrix once, as model/wte. "
          f"{load_weights_into_gpt.__name__} copies it once, into tok_emb.weight (named_parameters()", ha="left",
          size=9)
    label(ax, 0.6, 9.15, "lists the shared tensor once, under that name), and "
          f"{gpt_for_checkpoint.__name__} ties the head to it again after to_empty.", ha="left", size=9)
    x, w = 0.6, 11.0
    steps = [(0.8, "token ids (batch, n_tokens)", "white"),
             (2.4, "tok_emb: row i of W for token id i, plus pos_emb", COLORS["token"]),
             (4.0, f"blocks[0] ... blocks[{config.n_layers - 1}], final_norm: x (batch, n_tokens, {emb_dim})",
              COLORS["layer"]),
             (5.6, f"out_head: logits = x · Wᵀ, (batch, n_tokens, {vocab:,})", COLORS["token"]),
             (7.2, "logits: a score for every token of the vocabulary", "white")]
    for y, text, color in steps:
        box(ax, x, y, w, 1.0, text, color=color, size=8.8)
    for (y0, *_), (y1, *_) in zip(steps, steps[1:]):
        arrow(ax, (x + w / 2, y0 + 1.0), (x + w / 2, y1))
    # the one tensor, to the right, used twice
    box(ax, 15.6, 2.4, 5.6, 4.2, f"W\n{vocab:,} × {emb_dim}\n\ntok_emb.weight\nis out_head.weight\n(OpenAI's model/wte)",
        color=COLORS["token"], size=9, rounded=False, lw=1.6)
    for y, text in ((2.9, "a table of rows"), (6.1, "a linear layer's weight")):
        arrow(ax, (15.6, y), (x + w, y), ls="--")
        label(ax, (15.6 + x + w) / 2, y + 0.3, text, size=8.5, color=COLORS["muted"])
    label(ax, 22.0, 6.3, f"{vocab:,} × {emb_dim} = {shared:,} numbers,\nstored once", ha="left", size=9)
    label(ax, 22.0, 5.1, f"tied (GPT-2): {tied:,} parameters", ha="left", size=9)
    label(ax, 22.0, 4.4, f"untied: {untied:,} parameters", ha="left", size=9)
    label(ax, 22.0, 3.6, f"tying saves {shared:,} parameters,\n{4 * shared:,} bytes in float32,\n"
          f"{shared / untied:.1%} of the untied model", ha="left", size=9, va="top")
    label(ax, 22.0, 1.3, "(01's parameter_count, with\ntie_weights=True and False)", ha="left", size=8.5,
          color=COLORS["muted"])
    save(fig, path)


# --------------------------------------------------------------------------- the loading flow

def fig_03_loading_flow(path):
    fig, ax = canvas(31, 9.6)
    label(ax, 0.3, 9.0, "From the servers to a GPTModel: what runs when this chapter loads GPT-2", ha="left",
          size=10.5)
    w, h, gap = 5.6, 4.6, 0.55
    steps = [
        ("1. download", f"{ensure_gpt2_files.__name__}:\neach missing file into\n<name>.part, from OpenAI's\n"
         "storage, else the mirror\n(or the Hub's two files);\nresumed, retried", "white"),
        ("2. verify", "SHA-256 where known\n(all seven files of 124M),\nelse the content: hparams,\n"
         "the index's variables,\neach tensor's CRC32C;\nthen the final name and\nmanifest.json", "white"),
        ("3. read", f"{load_gpt2_params_from_tf_ckpt.__name__}\n(no TensorFlow), or the\nHub's reader: hparams,\n"
         "and params, nested NumPy\narrays, the leading 1\ndropped", "white"),
        ("4. an empty model", f"{gpt_for_checkpoint.__name__}\n(hparams): a GPTModel of\nthat shape, built on the\n"
         "meta device, then given\nmemory that nothing\nhas written yet", COLORS["layer"]),
        ("5. map and copy", f"{load_weights_into_gpt.__name__}:\nWEIGHT_NAMES pairs each\nparameter with its tensor;\n"
         "linear weights transposed;\nevery shape checked, every\nparameter filled once", COLORS["layer"]),
    ]
    x0, y = 0.5, 2.6
    for k, (title, text, color) in enumerate(steps):
        x = x0 + k * (w + gap)
        box(ax, x, y, w, h, "", color=color, size=8.5)
        label(ax, x + w / 2, y + h - 0.45, title, size=9.5, weight="bold")
        label(ax, x + w / 2, y + (h - 0.8) / 2, text, size=8.3)
        if k:
            arrow(ax, (x - gap, y + h / 2), (x, y + h / 2))
    # what download_and_load_gpt2 covers, and what this chapter adds
    for first, last, text in ((0, 2, f"{download_and_load_gpt2.__name__}(model_size, models_dir): "
                               "gpt_download.py and gpt2_support/"),
                              (3, 4, "this chapter, sections 4 and 5")):
        left, right = x0 + first * (w + gap), x0 + last * (w + gap) + w
        ax.plot([left, left, right, right], [y + h + 0.3, y + h + 0.6, y + h + 0.6, y + h + 0.3],
                color=COLORS["edge"], lw=1.0)
        label(ax, (left + right) / 2, y + h + 0.95, text, size=8.8)
    label(ax, 0.5, 1.6, "On the next run the files on disk are as manifest.json recorded them: no network request; "
          "steps 1 and 2 only compare them with the record.", ha="left", size=9)
    label(ax, 0.5, 0.8, "A file that fails step 2 is never used. Step 5 copies only once every check has passed; "
          "a failure names the tensor and leaves the model as it was.", ha="left", size=9)
    save(fig, path)
