"""Solutions to the exercises of 03_pretrained_weights.ipynb. Try them yourself first."""

import numpy as np
import torch


def load_block_weights(block, block_params):
    """03.1: copy one block of OpenAI's params (params["blocks"][i]) into a TransformerBlock."""
    def copy(parameter, array, transpose=False):
        tensor = torch.from_numpy(np.asarray(array))
        parameter.copy_(tensor.T if transpose else tensor)

    with torch.no_grad():
        for norm, name in ((block.norm1, "ln_1"), (block.norm2, "ln_2")):
            copy(norm.weight, block_params[name]["g"])  # g: the gain
            copy(norm.bias, block_params[name]["b"])
        linears = ((block.attn.qkv, "attn", "c_attn"), (block.attn.out_proj, "attn", "c_proj"),
                   (block.ff.expand, "mlp", "c_fc"), (block.ff.project, "mlp", "c_proj"))
        for linear, group, name in linears:
            copy(linear.weight, block_params[group][name]["w"], transpose=True)  # [in, out] -> [out, in]
            copy(linear.bias, block_params[group][name]["b"])


def split_c_attn(c_attn_w):
    """03.2: c_attn's [d, 3d] weight as three nn.Linear weights [d, d]: queries, keys, values."""
    query_w, key_w, value_w = np.split(np.asarray(c_attn_w), 3, axis=-1)
    return tuple(torch.from_numpy(part.T.copy()) for part in (query_w, key_w, value_w))


SOLUTIONS = {"03.1": load_block_weights, "03.2": split_c_attn}
