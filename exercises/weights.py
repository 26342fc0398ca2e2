"""The checkers of 03_pretrained_weights.ipynb's exercises (03.1, 03.2): loading OpenAI's checkpoint.
exercises/checks.py says how a checker works."""


import torch

from exercises.checks import (compare, exercise, generator, messages_of, random_like_init, run_learner,
                              small_config)


@exercise("03.1", "loading one block from OpenAI's checkpoint")
def check_load_block_weights(load_block_weights):
    from gpt2_from_scratch.architecture import GPTModel, TransformerBlock  # 01
    from gpt2_from_scratch.weights import gpt_to_openai_params  # 03, section 9
    torch.manual_seed(20)
    model = random_like_init(GPTModel(small_config(n_layers=1)), 21)
    block_params = gpt_to_openai_params(model)["blocks"][0]
    block = TransformerBlock(small_config())
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.zero_()
    try:
        run_learner(load_block_weights, block_params, changes=block, returns=None)
    except RuntimeError as error:
        if "size" in str(error) or "shape" in str(error):
            return [f"a shape does not fit ({error}): the checkpoint stores a weight as [in, out], nn.Linear as "
                    "[out, in], so copy the transpose (w.T)"]
        raise
    loaded, reference = dict(block.named_parameters()), dict(model.blocks[0].named_parameters())
    messages = []
    for name, expected in reference.items():
        answer = loaded[name].detach()
        partner = name.replace("weight", "bias") if name.endswith("weight") else name.replace("bias", "weight")
        mistakes = [(f"{name} holds its transpose: transpose the checkpoint's weight", expected.T)] \
            if expected.dim() == 2 else []
        if partner in reference and reference[partner].shape == expected.shape:
            mistakes.append((f"{name} holds {partner}'s values: g is the gain (weight), b the bias",
                             reference[partner].detach()))
        messages.append(compare(answer, expected.detach(), name, mistakes))
    return messages_of(*messages)


@exercise("03.2", "splitting c_attn into queries, keys and values")
def check_split_c_attn(split_c_attn):
    g = generator(22)
    d = 6
    c_attn_w = torch.randn(d, 3 * d, generator=g).numpy()  # as in the checkpoint: [in, out]
    answer = run_learner(split_c_attn, c_attn_w, returns=tuple)
    if not (isinstance(answer, tuple) and len(answer) == 3):
        return ["return three weights: (query_weight, key_weight, value_weight)"]
    if any(torch.as_tensor(part).shape == (d // 3, 3 * d) for part in answer):
        return ["the split is along the first axis: c_attn/w is [in, 3 · out], split its last axis in three"]
    w = torch.from_numpy(c_attn_w)
    messages = []
    for name, part, right in zip(("query_weight", "key_weight", "value_weight"), answer, w.split(d, dim=-1)):
        mistakes = [(f"{name} is not transposed: the checkpoint stores [in, out], nn.Linear [out, in]", right)]
        messages.append(compare(torch.as_tensor(part), right.T, name, mistakes))
    return messages_of(*messages)
