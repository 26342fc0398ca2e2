"""The Hugging Face Hub's copy of GPT-2: its tensor names, its config.json, and model.safetensors read.

The Hub serves the same four models (openai-community/gpt2, -medium, -large, -xl) as model.safetensors
and config.json. The tensors are OpenAI's, under other names, with the leading 1 of the weights already
dropped: "h.3.attn.c_attn.weight" [768, 2304] is "model/h3/attn/c_attn/w" [1, 768, 2304]. Files written
by transformers' save_pretrained put "transformer." in front of every name. Besides the weights, older
files also hold each block's causal-mask buffers ("attn.bias", "attn.masked_bias"), which are not
weights and are skipped; "lm_head.weight", when present, is the token embedding again (GPT-2 ties
them) and must equal it.

The names come from the one table, gpt2_support.weight_names. safetensors stores no checksum, so
reading checks the layout (every tensor there once, float32, of its shape); the downloader checks the
bytes by SHA-256.
"""

import numpy as np

from gpt2_support.layout import CheckpointError, openai_variable_shapes, variables_to_params
from gpt2_support.weight_names import WEIGHT_NAMES

__all__ = ["HF_TO_OPENAI", "HF_TOP_LEVEL", "HF_BUFFERS", "openai_name_of_hf", "hparams_from_hf_config",
           "hf_config_from_hparams", "safetensors_layout", "safetensors_variables",
           "load_gpt2_params_from_safetensors"]

# From the one table: the name within a block on the Hub -> the name within a block in OpenAI's checkpoint
# ("ln_1.weight" -> "ln_1/g"), and the tensors outside the blocks ("wte.weight" -> "model/wte").
HF_TO_OPENAI = {hub.removeprefix("h.{i}."): openai.removeprefix("model/h{i}/")
                for _, openai, hub, _ in WEIGHT_NAMES if "{i}" in hub}
HF_TOP_LEVEL = {hub: openai for _, openai, hub, _ in WEIGHT_NAMES if "{i}" not in hub}
HF_BUFFERS = ("attn.bias", "attn.masked_bias")  # causal masks stored by older versions of transformers

# What every GPT-2 config.json on the Hub says besides the sizes.
_HF_CONFIG_CONSTANTS = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05,
                        "bos_token_id": 50256, "eos_token_id": 50256}


def openai_name_of_hf(name):
    """OpenAI's variable name for a tensor name of a Hugging Face GPT-2 file; None for a mask buffer and
    for lm_head.weight (the tied output head); a CheckpointError for anything else."""
    bare = name.removeprefix("transformer.")
    if bare in HF_TOP_LEVEL:
        return HF_TOP_LEVEL[bare]
    if bare == "lm_head.weight":
        return None
    parts = bare.split(".", 2)  # "h", the block's index, the name within the block
    if len(parts) == 3 and parts[0] == "h" and parts[1].isdigit():
        if parts[2] in HF_BUFFERS:
            return None
        if parts[2] in HF_TO_OPENAI:
            return f"model/h{parts[1]}/{HF_TO_OPENAI[parts[2]]}"
    raise CheckpointError(f"{name!r} is not a tensor of a Hugging Face GPT-2 model")


def hparams_from_hf_config(config):
    """OpenAI's hparams (n_vocab, n_ctx, n_embd, n_head, n_layer) from a Hugging Face config.json dict."""
    try:
        return {"n_vocab": config["vocab_size"], "n_ctx": config.get("n_ctx", config["n_positions"]),
                "n_embd": config["n_embd"], "n_head": config["n_head"], "n_layer": config["n_layer"]}
    except KeyError as error:
        raise CheckpointError(f"config.json lacks {error.args[0]!r}: is it a GPT-2 model's config?") from None


def hf_config_from_hparams(hparams):
    """The Hub's config.json (a dict) for a GPT-2 with these hparams: the inverse of hparams_from_hf_config,
    with the constants every GPT-2 config on the Hub carries (GELU's tanh form, layer norm's epsilon, ...)."""
    return {**_HF_CONFIG_CONSTANTS, "vocab_size": hparams["n_vocab"], "n_positions": hparams["n_ctx"],
            "n_ctx": hparams["n_ctx"], "n_embd": hparams["n_embd"], "n_head": hparams["n_head"],
            "n_layer": hparams["n_layer"]}


_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                       "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def safetensors_layout(path, hparams):
    """Check a GPT-2 model.safetensors against hparams from its header alone (no tensor is read):
    every tensor hparams implies must be there exactly once, float32, of its shape, and nothing else but
    the mask buffers and the tied lm_head. Returns {name in the file: OpenAI's name, or None for a tensor
    to skip}; a CheckpointError names the file and the tensor."""
    from safetensors import SafetensorError, safe_open

    expected = openai_variable_shapes(hparams)
    layout, found = {}, {}
    try:
        with safe_open(str(path), framework="numpy") as tensors:
            for name in tensors.keys():
                openai_name = openai_name_of_hf(name)
                layout[name] = openai_name
                if openai_name is None:
                    continue
                if openai_name in found:
                    raise CheckpointError(f"{path} holds {openai_name} twice (with and without 'transformer.')")
                if openai_name not in expected:
                    raise CheckpointError(f"{path} has {name}, which config.json's sizes do not imply "
                                          f"(n_layer={hparams['n_layer']}): do the two files belong together?")
                tensor = tensors.get_slice(name)
                dtype, shape = tensor.get_dtype(), tuple(tensor.get_shape())
                wanted = expected[openai_name][1:] if len(expected[openai_name]) == 3 else expected[openai_name]
                if dtype != "F32" or shape != wanted:
                    raise CheckpointError(f"{name} in {path} is {_SAFETENSORS_DTYPES.get(dtype, dtype)} {list(shape)}; "
                                          f"config.json implies float32 {list(wanted)}")
                found[openai_name] = name
    except SafetensorError as error:
        raise CheckpointError(f"{path} is damaged or not a safetensors file ({error}). Delete it and "
                              "download it again.") from None
    missing = sorted(set(expected) - set(found))
    if missing:
        raise CheckpointError(f"{path} lacks {len(missing)} tensors config.json implies, e.g. {missing[:3]}")
    return layout


def safetensors_variables(path):
    """The tensors of a GPT-2 model.safetensors under OpenAI's names and shapes, from its header alone:
    {"model/h0/attn/c_attn/w": (1, 768, 2304), ...}, like checkpoint_variables for OpenAI's files
    (the mask buffers and the tied lm_head are left out: they are not variables of OpenAI's checkpoint)."""
    from safetensors import SafetensorError, safe_open

    shapes = {}
    try:
        with safe_open(str(path), framework="numpy") as tensors:
            for name in tensors.keys():
                openai_name = openai_name_of_hf(name)
                if openai_name is not None:
                    shape = tuple(tensors.get_slice(name).get_shape())
                    shapes[openai_name] = (1, *shape) if openai_name.endswith("/w") and len(shape) == 2 else shape
    except SafetensorError as error:
        raise CheckpointError(f"{path} is damaged or not a safetensors file ({error})") from None
    return shapes


def load_gpt2_params_from_safetensors(path, hparams):
    """Read a Hugging Face GPT-2 model.safetensors into the same nested arrays as
    load_gpt2_params_from_tf_ckpt (so everything that loads OpenAI's checkpoint loads it unchanged).

    The file is first checked by safetensors_layout; a tied lm_head.weight must equal wte.weight.
    A CheckpointError names the file and the tensor.
    """
    from safetensors import safe_open

    layout = safetensors_layout(path, hparams)
    variables, lm_head = {}, None
    with safe_open(str(path), framework="numpy") as tensors:
        for name, openai_name in layout.items():
            if openai_name is not None:
                variables[openai_name] = tensors.get_tensor(name)
            elif name.removeprefix("transformer.") == "lm_head.weight":
                lm_head = tensors.get_tensor(name)
    if lm_head is not None and not np.array_equal(lm_head, variables["model/wte"]):
        raise CheckpointError(f"{path}: lm_head.weight differs from wte.weight, but GPT-2 ties them")
    return variables_to_params(variables, hparams)
