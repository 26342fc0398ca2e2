"""One table of GPT-2's weights: each `GPTModel` parameter, OpenAI's checkpoint variable, the Hub's tensor.

Loading (03, `load_weights_into_gpt`), export (`gpt_to_openai_params`), reading the Hub's safetensors
(`gpt2_support.hub`) and 03's figure of the mapping all read this table, so a name is written once.

`{i}` stands for a block's index. OpenAI stored a linear layer's weight as [in_features, out_features]
(a 1-wide convolution, with a leading axis of 1 in its checkpoint), as does the Hub; `nn.Linear` stores
[out_features, in_features], so those rows are transposed. The output head has no row: GPT-2 ties it to
the token embedding, so `GPTModel.named_parameters()` lists that one tensor once, as `tok_emb.weight`.
"""

__all__ = ["WEIGHT_NAMES", "weight_names"]

WEIGHT_NAMES = (
    # GPTModel parameter                 OpenAI's variable              the Hub's tensor             transpose
    ("tok_emb.weight",                   "model/wte",                   "wte.weight",                False),
    ("pos_emb.weight",                   "model/wpe",                   "wpe.weight",                False),
    ("blocks.{i}.norm1.weight",          "model/h{i}/ln_1/g",           "h.{i}.ln_1.weight",         False),
    ("blocks.{i}.norm1.bias",            "model/h{i}/ln_1/b",           "h.{i}.ln_1.bias",           False),
    # c_attn's last axis is [queries | keys | values], the order in which CausalSelfAttention splits qkv
    ("blocks.{i}.attn.qkv.weight",       "model/h{i}/attn/c_attn/w",    "h.{i}.attn.c_attn.weight",  True),
    ("blocks.{i}.attn.qkv.bias",         "model/h{i}/attn/c_attn/b",    "h.{i}.attn.c_attn.bias",    False),
    ("blocks.{i}.attn.out_proj.weight",  "model/h{i}/attn/c_proj/w",    "h.{i}.attn.c_proj.weight",  True),
    ("blocks.{i}.attn.out_proj.bias",    "model/h{i}/attn/c_proj/b",    "h.{i}.attn.c_proj.bias",    False),
    ("blocks.{i}.norm2.weight",          "model/h{i}/ln_2/g",           "h.{i}.ln_2.weight",         False),
    ("blocks.{i}.norm2.bias",            "model/h{i}/ln_2/b",           "h.{i}.ln_2.bias",           False),
    ("blocks.{i}.ff.expand.weight",      "model/h{i}/mlp/c_fc/w",       "h.{i}.mlp.c_fc.weight",     True),
    ("blocks.{i}.ff.expand.bias",        "model/h{i}/mlp/c_fc/b",       "h.{i}.mlp.c_fc.bias",       False),
    ("blocks.{i}.ff.project.weight",     "model/h{i}/mlp/c_proj/w",     "h.{i}.mlp.c_proj.weight",   True),
    ("blocks.{i}.ff.project.bias",       "model/h{i}/mlp/c_proj/b",     "h.{i}.mlp.c_proj.bias",     False),
    ("final_norm.weight",                "model/ln_f/g",                "ln_f.weight",               False),
    ("final_norm.bias",                  "model/ln_f/b",                "ln_f.bias",                 False),
)


def weight_names(n_layer):
    """Every row of WEIGHT_NAMES for a model of n_layer blocks, with `{i}` filled in, in the table's order
    (the embeddings, then block 0's rows, block 1's, ..., then the final norm)."""
    first, block, last = WEIGHT_NAMES[:2], WEIGHT_NAMES[2:-2], WEIGHT_NAMES[-2:]  # embeddings, a block, ln_f
    assert all("{i}" in row[0] for row in block) and not any("{i}" in row[0] for row in first + last)
    rows = list(first)
    for index in range(n_layer):
        rows.extend((ours.format(i=index), openai.format(i=index), hub.format(i=index), transpose)
                    for ours, openai, hub, transpose in block)
    return rows + list(last)
