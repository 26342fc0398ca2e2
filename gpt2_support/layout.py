"""OpenAI's checkpoint layout, which both readers return: the variables of a GPT-2 of given hparams, and
the nested params that load_gpt2_params_from_tf_ckpt and load_gpt2_params_from_safetensors give.

The variables are named like "model/h0/attn/c_attn/w" (`openai_variable_shapes` lists them all). The
weights of the linear layers are stored as [1, in_features, out_features]: OpenAI implemented them as
1-wide convolutions. The nested params drop that leading 1:

    {"wte", "wpe", "g", "b", "blocks": [{"ln_1": {"g", "b"}, "attn": {"c_attn": {"w", "b"}, ...},
                                         "ln_2": ..., "mlp": {"c_fc": ..., "c_proj": ...}}, ...]}

("g" and "b" at the top are the final layer norm, ln_f.) The names are those of the one table,
gpt2_support.weight_names; this module adds their shapes and nesting.
"""

__all__ = ["CheckpointError", "openai_variable_shapes", "variables_to_params", "params_location"]


class CheckpointError(ValueError):
    """A checkpoint file is damaged, or not a checkpoint this reader understands."""


def openai_variable_shapes(hparams):
    """Every variable of an OpenAI GPT-2 checkpoint with these hparams: {name: shape}."""
    d, vocab, ctx = hparams["n_embd"], hparams["n_vocab"], hparams["n_ctx"]
    shapes = {"model/wte": (vocab, d), "model/wpe": (ctx, d)}
    for layer in range(hparams["n_layer"]):
        prefix = f"model/h{layer}"
        shapes |= {
            f"{prefix}/ln_1/g": (d,), f"{prefix}/ln_1/b": (d,),
            f"{prefix}/attn/c_attn/w": (1, d, 3 * d), f"{prefix}/attn/c_attn/b": (3 * d,),
            f"{prefix}/attn/c_proj/w": (1, d, d), f"{prefix}/attn/c_proj/b": (d,),
            f"{prefix}/ln_2/g": (d,), f"{prefix}/ln_2/b": (d,),
            f"{prefix}/mlp/c_fc/w": (1, d, 4 * d), f"{prefix}/mlp/c_fc/b": (4 * d,),
            f"{prefix}/mlp/c_proj/w": (1, 4 * d, d), f"{prefix}/mlp/c_proj/b": (d,),
        }
    shapes |= {"model/ln_f/g": (d,), "model/ln_f/b": (d,)}
    return shapes


def variables_to_params(variables, hparams):
    """{OpenAI variable name: array} -> the nested params (a [1, in, out] weight becomes [in, out])."""
    params = {"blocks": [{} for _ in range(hparams["n_layer"])]}
    for name, array in variables.items():
        target, keys = params_location(params, name)
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = array[0] if array.ndim == 3 else array
    return params


def params_location(params, name):
    """Where an OpenAI variable lives in the nested params: (the dict to start from, the keys below it).
    03_pretrained_weights reads params through it too (checkpoint_array).
    "model/h3/attn/c_attn/w" -> (params["blocks"][3], ["attn", "c_attn", "w"]); "model/ln_f/g" -> (params, ["g"])."""
    parts = name.split("/")[1:]  # drop "model/"
    if parts[0].startswith("h"):
        return params["blocks"][int(parts[0][1:])], parts[1:]
    if parts[0] == "ln_f":
        return params, parts[1:]
    return params, parts
