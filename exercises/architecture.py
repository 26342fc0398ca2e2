"""The checkers of 01_architecture.ipynb's exercises (01.1 to 01.11): embeddings, attention, the block
and the whole model. exercises/checks.py says how a checker works."""

import math
import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from exercises.checks import (close, compare, error_raised_by, exercise, generator, messages_of, random_like_init,
                              run_learner, small_config)


@exercise("01.1", "token and position embeddings")
def check_embed_tokens(embed_tokens):
    g = generator(1)
    tok_emb, pos_emb = nn.Embedding(12, 8), nn.Embedding(12, 8)
    random_like_init(tok_emb, 2)
    random_like_init(pos_emb, 3)
    token_ids = torch.randint(0, 12, (2, 5), generator=g)
    positions = torch.arange(5)
    with torch.no_grad():
        answer = run_learner(embed_tokens, token_ids, tok_emb, pos_emb)
        expected = tok_emb(token_ids) + pos_emb(positions)
        mistakes = [
            ("the position embeddings are missing: add pos_emb(positions) for positions 0 .. n_tokens - 1",
             tok_emb(token_ids)),
            ("pos_emb is looked up by token id; look it up by position, torch.arange(n_tokens)",
             tok_emb(token_ids) + pos_emb(token_ids)),
            ("the positions start at 1; the first token is at position 0", tok_emb(token_ids) + pos_emb(positions + 1)),
        ]
    return messages_of(compare(answer, expected, "the input vectors", mistakes))


@exercise("01.2", "attention weights and context vectors without trainable weights")
def check_simple_attention(simple_attention):
    x = torch.randn(6, 3, generator=generator(4))
    with torch.no_grad():
        answer = run_learner(simple_attention, x, returns=tuple)
    if not (isinstance(answer, tuple) and len(answer) == 2):
        return ["return a pair: (weights, contexts)"]
    weights, contexts = answer
    scores = x @ x.T
    expected_weights = torch.softmax(scores, dim=-1)
    weight_mistakes = [
        ("the softmax runs along the wrong axis: each row (one query) must sum to 1, so use dim=-1",
         torch.softmax(scores, dim=0)),
        ("these are the raw scores: apply softmax, so that each row is positive and sums to 1", scores),
    ]
    context_mistakes = [("the context vectors must average the token vectors: weights @ x, not weights.T @ x",
                         expected_weights.T @ x)]
    weights_message = compare(weights, expected_weights, "weights", weight_mistakes)
    if weights_message and isinstance(weights, torch.Tensor) and isinstance(contexts, torch.Tensor) \
            and weights.shape == (6, 6) and close(contexts, weights @ x):
        return [weights_message]  # the contexts follow from the weights given: only the weights are wrong
    return messages_of(weights_message, compare(contexts, expected_weights @ x, "contexts", context_mistakes))


@exercise("01.3", "scaled dot-product attention")
def check_scaled_attention(scaled_attention):
    g = generator(5)
    queries, keys, values = (torch.randn(2, 5, 16, generator=g) for _ in range(3))
    with torch.no_grad():
        try:
            answer = run_learner(scaled_attention, queries, keys, values)
        except RuntimeError as error:
            # keys.T reverses all the axes of the (batch, n_tokens, d_k) keys, as permute(2, 1, 0) does (and
            # is deprecated on more than 2 axes): (16, 5, 2), which no matrix product with the queries takes
            keys_reversed = keys.permute(2, 1, 0)
            if str(error) in (error_raised_by(lambda: queries @ keys_reversed),
                              error_raised_by(lambda: torch.bmm(queries, keys_reversed))):
                return ["keys.T reverses all three axes of the (batch, n_tokens, d_k) keys, to (d_k, n_tokens, "
                        "batch) (and .T on more than two axes is deprecated), so the product with the queries "
                        "fails: transpose only the last two, keys.transpose(-2, -1) (or keys.transpose(1, 2))"]
            raise
    scores = queries @ keys.transpose(-2, -1)
    mistakes = [
        ("the scores are not scaled: divide them by √d_k = √16 before the softmax",
         torch.softmax(scores, dim=-1) @ values),
        ("the scores are divided by d_k = 16; divide by its square root, √d_k = 4",
         torch.softmax(scores / 16, dim=-1) @ values),
        ("the softmax runs along the queries' axis: use dim=-1, so each query's weights sum to 1",
         torch.softmax(scores / 4, dim=-2) @ values),
    ]
    return messages_of(compare(answer, torch.softmax(scores / 4, dim=-1) @ values, "the context", mistakes))


@exercise("01.4", "the causal mask")
def check_causal_attention_weights(causal_attention_weights):
    scores = torch.randn(2, 6, 6, generator=generator(6))
    with torch.no_grad():
        answer = run_learner(causal_attention_weights, scores)
    future = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    expected = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    with_diagonal = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=0)
    mistakes = [
        ("the future was zeroed after the softmax, so the rows no longer sum to 1: set the future's scores "
         "to -inf before the softmax", torch.softmax(scores, dim=-1).masked_fill(future, 0.0)),
        ("row 0 of the attention weights is NaN: the diagonal is masked too, so all of the first token's "
         "scores are -inf and the softmax divides 0 by 0; a token may attend to itself, so mask only the "
         "future, above the diagonal (torch.triu(..., diagonal=1))",
         torch.softmax(scores.masked_fill(with_diagonal, float("-inf")), dim=-1)),
        ("the diagonal is masked too: a token may attend to itself, so mask only above the diagonal "
         "(torch.triu(..., diagonal=1))", torch.softmax(scores.masked_fill(with_diagonal, -1e9), dim=-1)),
        ("the mask hides the past and shows the future: mask the entries above the diagonal, not below",
         torch.softmax(scores.masked_fill(future.T, float("-inf")), dim=-1)),
        ("the future's scores were set to 0 before the softmax, and exp(0) = 1 still gives them weight: "
         "set them to -inf", torch.softmax(scores.masked_fill(future, 0.0), dim=-1)),
        ("the scores are not passed through softmax", scores.masked_fill(future, float("-inf"))),
    ]
    message = compare(answer, expected, "the attention weights", mistakes)
    if message not in dict(mistakes) and isinstance(answer, torch.Tensor) and answer.shape == expected.shape:
        masked_rows = sorted({int(row) for row in torch.isnan(answer).all(dim=-1).nonzero()[:, -1]})
        if masked_rows:  # every score of a row set to -inf: its softmax is 0/0
            rows = (f"row {masked_rows[0]} of the attention weights is" if len(masked_rows) == 1 else
                    f"rows {', '.join(map(str, masked_rows[:-1]))} and {masked_rows[-1]} of the attention "
                    "weights are")
            message = (f"{rows} NaN: a row whose scores are all masked (-inf) has a softmax of 0 / 0; a token "
                       "always sees itself and the tokens before it, so mask only the future, above the diagonal "
                       "(torch.triu(..., diagonal=1))")
    return messages_of(message)


def multi_head_reference(x, qkv, out_proj, n_heads, causal=True, split_right=True, merge_right=True,
                         project=True, scale=True):
    """Multi-head attention written out, with switches for the typical mistakes (its correct form is
    checked against 01's CausalSelfAttention in the tests)."""
    batch, n_tokens, emb_dim = x.shape
    head_dim = emb_dim // n_heads

    def split(t):
        if split_right:
            return t.view(batch, n_tokens, n_heads, head_dim).transpose(1, 2)
        return t.reshape(batch, n_heads, n_tokens, head_dim)

    queries, keys, values = map(split, qkv(x).split(emb_dim, dim=-1))
    # scale: True divides by √head_dim, False by nothing, a number by that number (a mistake's divisor)
    divisor = head_dim ** 0.5 if scale is True else 1.0 if scale is False else scale
    scores = queries @ keys.transpose(-2, -1) / divisor
    if causal:
        future = torch.triu(torch.ones(n_tokens, n_tokens, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    context = torch.softmax(scores, dim=-1) @ values
    merged = context.transpose(1, 2).reshape(batch, n_tokens, emb_dim) if merge_right else \
        context.reshape(batch, n_tokens, emb_dim)
    return out_proj(merged) if project else merged


@exercise("01.5", "multi-head causal self-attention")
def check_multi_head_attention(multi_head_attention):
    from gpt2_from_scratch.architecture import CausalSelfAttention  # 01, section 3.7
    attention = random_like_init(CausalSelfAttention(12, 3, qkv_bias=True), 7).eval()
    x = torch.randn(2, 5, 12, generator=generator(8))
    with torch.no_grad():
        answer = run_learner(multi_head_attention, x, attention.qkv, attention.out_proj, 3)
        expected = attention(x)
        args = (x, attention.qkv, attention.out_proj, 3)
        mistakes = [
            ("tokens see the future: apply the causal mask", multi_head_reference(*args, causal=False)),
            ("the heads are split in the wrong order: view as (batch, n_tokens, n_heads, head_dim), "
             "then transpose(1, 2)", multi_head_reference(*args, split_right=False, merge_right=False)),
            ("the heads are merged in the wrong order: transpose(1, 2) back to (batch, n_tokens, n_heads, "
             "head_dim) before reshaping to (batch, n_tokens, emb_dim)", multi_head_reference(*args, merge_right=False)),
            ("the output projection is missing: finish with out_proj(...)", multi_head_reference(*args, project=False)),
            ("the scores are not scaled by 1/√head_dim", multi_head_reference(*args, scale=False)),
            ("the scores are divided by √emb_dim = √12; each head's scores are divided by √head_dim = √4 = 2",
             multi_head_reference(*args, scale=12 ** 0.5)),
        ]
    return messages_of(compare(answer, expected, "the output", mistakes))


@exercise("01.6", "the feed-forward network")
def check_apply_feed_forward(apply_feed_forward):
    from gpt2_from_scratch.architecture import FeedForward  # 01, section 4.3
    network = random_like_init(FeedForward(8), 9)
    x = 3 * torch.randn(2, 4, 8, generator=generator(10))
    with torch.no_grad():
        answer = run_learner(apply_feed_forward, x, network.expand, network.project)
        mistakes = [
            ("GPT-2 uses GELU, not ReLU", network.project(F.relu(network.expand(x)))),
            ("this is the exact GELU; GPT-2 uses its tanh approximation, F.gelu(..., approximate='tanh')",
             network.project(F.gelu(network.expand(x)))),
            ("the activation between the two layers is missing", network.project(network.expand(x))),
        ]
        # rtol 1e-5: exact GELU differs from the tanh form by at most about 5e-4
        return messages_of(compare(answer, network(x), "the output", mistakes, rtol=1e-5))


@exercise("01.7", "layer normalisation")
def check_layer_norm(layer_norm):
    g = generator(11)
    x = 4 * torch.randn(3, 4, 8, generator=g) + 2
    x[0, 0] = 1.0 + 0.01 * torch.randn(8, generator=g)  # a row of small variance, where eps matters
    weight, bias = torch.randn(8, generator=g), torch.randn(8, generator=g)
    eps = 1e-5
    answer = run_learner(layer_norm, x, weight, bias)
    mean = x.mean(dim=-1, keepdim=True)
    variance = x.var(dim=-1, keepdim=True, unbiased=False)
    mistakes = [
        ("the variance is the unbiased one (divided by n - 1); layer norm divides by n: var(unbiased=False)",
         (x - mean) / torch.sqrt(x.var(dim=-1, keepdim=True) + eps) * weight + bias),
        ("eps must go inside the square root: (x - mean) / sqrt(variance + eps)",
         (x - mean) / (torch.sqrt(variance) + eps) * weight + bias),
        ("the scale (weight) and shift (bias) are not applied", (x - mean) / torch.sqrt(variance + eps)),
        ("the statistics are taken over the wrong axis: normalise each token's vector, dim=-1",
         (x - x.mean(dim=0, keepdim=True)) / torch.sqrt(x.var(dim=0, keepdim=True, unbiased=False) + eps)
         * weight + bias),
    ]
    return messages_of(compare(answer, F.layer_norm(x, (8,), weight, bias, eps), "the output", mistakes))


@exercise("01.8", "the transformer block")
def check_block_forward(block_forward):
    from gpt2_from_scratch.architecture import TransformerBlock  # 01, section 4.6
    block = random_like_init(TransformerBlock(small_config()), 12).eval()
    x = torch.randn(2, 5, 16, generator=generator(13))
    with torch.no_grad():
        answer = run_learner(block_forward, block, x)
        attn, ff, norm1, norm2 = block.attn, block.ff, block.norm1, block.norm2
        attended = attn(norm1(x))
        post_ln = norm1(x + attn(x))
        post_ln = norm2(post_ln + ff(post_ln))
        after_attention = x + attended
        feed_forward_first, feed_forward_first_norm1 = x + ff(norm2(x)), x + ff(norm1(x))  # halves swapped
        swapped = ("the feed-forward half comes first; GPT-2's block attends first: x = x + attn(norm1(x)), then "
                   "x = x + ff(norm2(x))")
        normalised_shortcut = norm1(x) + attended
        mistakes = [
            ("the shortcuts are missing: add each sub-layer's output to its input, x = x + attn(norm1(x))",
             ff(norm2(attended))),
            ("this is post-LN (norm after the addition); GPT-2 is pre-LN: x = x + attn(norm1(x))", post_ln),
            ("the shortcut adds the normalised x; it must add the un-normalised x: x + attn(norm1(x))",
             normalised_shortcut + ff(norm2(normalised_shortcut))),
            ("the feed-forward half is missing: then x = x + ff(norm2(x))", after_attention),
            ("the two halves run in parallel on the same x (as in GPT-J); in GPT-2 the feed-forward half "
             "takes the attention half's output: x = x + attn(norm1(x)), then x = x + ff(norm2(x))",
             x + attended + ff(norm2(x))),
            (swapped, feed_forward_first + attn(norm1(feed_forward_first))),
            (swapped, feed_forward_first_norm1 + attn(norm2(feed_forward_first_norm1))),
        ]
        return messages_of(compare(answer, block(x), "the output", mistakes))


@exercise("01.9", "the configuration's parameter count")
def check_count_gpt_parameters(count_gpt_parameters):
    from gpt2_from_scratch.architecture import GPTConfig, parameter_count  # 01, sections 4.5 and 5.1
    messages = []
    # The small model has 3 blocks: with 2, its layer norms' parameters (4·n_layers + 2)·emb_dim and its
    # feed-forward biases 5·emb_dim·n_layers are both 160, and one mistake would be named for the other.
    for cfg in (GPTConfig.from_preset("124M"), GPTConfig.from_preset("355M"),
                small_config(qkv_bias=False, tie_weights=False, n_layers=3)):
        answer, expected = run_learner(count_gpt_parameters, cfg, returns=numbers.Real), parameter_count(cfg)
        if answer == expected:
            continue
        difference = answer - expected
        layer_norms = (4 * cfg.n_layers + 2) * cfg.emb_dim
        if cfg.tie_weights and difference == cfg.vocab_size * cfg.emb_dim:
            messages.append(f"{cfg.emb_dim}-wide model: you counted out_head's weight, but with tie_weights "
                            "it is tok_emb's matrix, counted once")
        elif not cfg.tie_weights and difference == -cfg.vocab_size * cfg.emb_dim:
            messages.append("without tie_weights, out_head has its own vocab_size × emb_dim weight: count it")
        elif cfg.qkv_bias and difference == -3 * cfg.emb_dim * cfg.n_layers:
            messages.append("the query/key/value biases are missing (qkv_bias=True): 3 × emb_dim per block")
        elif difference == -layer_norms:
            messages.append("the layer norms are missing: a weight and a bias of emb_dim each, two per block "
                            "and the final one")
        elif difference == -cfg.context_length * cfg.emb_dim:
            messages.append("the position embeddings are missing: context_length × emb_dim")
        elif difference == -5 * cfg.emb_dim * cfg.n_layers:
            messages.append("the feed-forward biases are missing: 4 × emb_dim (expand) and emb_dim (project) "
                            "per block")
        else:
            messages.append(f"for emb_dim={cfg.emb_dim}, n_layers={cfg.n_layers}: {answer:,}, expected "
                            f"{expected:,} ({difference:+,})")
    return messages


@exercise("01.10", "the whole model's forward pass")
def check_gpt_forward(gpt_forward):
    from gpt2_from_scratch.architecture import GPTModel  # 01, section 5
    torch.manual_seed(14)
    model = GPTModel(small_config()).eval()
    random_like_init(model.final_norm, 15)
    token_ids = torch.randint(0, 50, (2, 6), generator=generator(16))
    positions = torch.arange(6)

    def run(x, final_norm=True):
        for block in model.blocks:
            x = block(x)
        return model.out_head(model.final_norm(x) if final_norm else x)

    with torch.no_grad():
        answer = run_learner(gpt_forward, model, token_ids)
        mistakes = [
            ("the position embeddings are missing: add model.pos_emb(positions)", run(model.tok_emb(token_ids))),
            ("the final layer norm is missing: model.final_norm before model.out_head",
             run(model.tok_emb(token_ids) + model.pos_emb(positions), final_norm=False)),
            ("the positions start at 1; they run 0 .. n_tokens - 1",
             run(model.tok_emb(token_ids) + model.pos_emb(positions + 1))),
        ]
        return messages_of(compare(answer, model(token_ids), "the logits", mistakes))


@exercise("01.11", "GPT-2's weight initialisation")
def check_init_gpt_weights(init_gpt_weights):
    from gpt2_from_scratch.architecture import GPTModel  # 01, section 5
    cfg = small_config(emb_dim=128, n_heads=4, n_layers=8, vocab_size=500, context_length=64)
    model = GPTModel(cfg)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:  # layer norms keep their weight 1 and bias 0, as GPTModel leaves them
                parameter.fill_(0.5)  # so that anything left alone shows
    residual_std = 0.02 / math.sqrt(2 * cfg.n_layers)
    torch.manual_seed(17)
    run_learner(init_gpt_weights, changes=model, returns=None)
    messages = []
    for name, parameter in model.named_parameters():
        if ".norm" in name or name.startswith("final_norm"):
            target = 1.0 if name.endswith("weight") else 0.0
            if not torch.all(parameter == target):
                messages.append(f"{name} should be {target:g}: layer norms start as the identity (weight 1, "
                                "bias 0)")
        elif name.endswith("bias"):
            if not torch.all(parameter == 0):
                messages.append(f"{name} should be zero")
        else:
            expected = residual_std if name.endswith(("attn.out_proj.weight", "ff.project.weight")) else 0.02
            std, mean = parameter.std().item(), parameter.mean().item()
            if abs(std - expected) > 0.15 * expected or abs(mean) > 0.2 * expected:
                why = (" (the residual projections are scaled down to 0.02 / √(2 · n_layers))"
                       if expected == residual_std else "")
                messages.append(f"{name} has mean {mean:.4f} and std {std:.4f}; expected mean 0 and std "
                                f"{expected:.4f}{why}")
    return messages  # run_check says many alike ones (a block's parameter, then the next's) in a few lines
