"""Solutions to the exercises of 01_architecture.ipynb. Try them yourself first: each exercise's
check_exercise(...) call tells you what is wrong with an answer."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def embed_tokens(token_ids, tok_emb, pos_emb):
    """01.1: token vectors plus position vectors, (batch, n_tokens, emb_dim)."""
    positions = torch.arange(token_ids.shape[1])
    return tok_emb(token_ids) + pos_emb(positions)


def simple_attention(x):
    """01.2: attention weights and context vectors of x (n_tokens, d) attending to itself."""
    scores = x @ x.T
    weights = torch.softmax(scores, dim=-1)
    return weights, weights @ x


def scaled_attention(queries, keys, values):
    """01.3: softmax(Q Kᵀ / √d_k) V, without a mask."""
    d_k = keys.shape[-1]
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(d_k)
    return torch.softmax(scores, dim=-1) @ values


def causal_attention_weights(scores):
    """01.4: the softmax of (..., n_tokens, n_tokens) scores with the future hidden."""
    n_tokens = scores.shape[-1]
    future = torch.triu(torch.ones(n_tokens, n_tokens, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


def multi_head_attention(x, qkv, out_proj, n_heads):
    """01.5: multi-head causal self-attention with a fused qkv projection."""
    batch, n_tokens, emb_dim = x.shape
    head_dim = emb_dim // n_heads
    queries, keys, values = qkv(x).split(emb_dim, dim=-1)
    # (batch, n_tokens, emb_dim) -> (batch, n_heads, n_tokens, head_dim)
    queries = queries.view(batch, n_tokens, n_heads, head_dim).transpose(1, 2)
    keys = keys.view(batch, n_tokens, n_heads, head_dim).transpose(1, 2)
    values = values.view(batch, n_tokens, n_heads, head_dim).transpose(1, 2)
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(head_dim)
    weights = causal_attention_weights(scores)
    context = (weights @ values).transpose(1, 2).reshape(batch, n_tokens, emb_dim)
    return out_proj(context)


def apply_feed_forward(x, expand, project):
    """01.6: expand, GELU (tanh approximation), project back."""
    return project(F.gelu(expand(x), approximate="tanh"))


def layer_norm(x, weight, bias, eps=1e-5):
    """01.7: normalise each vector over its last axis, then scale and shift."""
    mean = x.mean(dim=-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


def block_forward(block, x):
    """01.8: a pre-LN transformer block, from the block's own modules (in eval mode: no dropout)."""
    x = x + block.attn(block.norm1(x))
    x = x + block.ff(block.norm2(x))
    return x


def count_gpt_parameters(cfg):
    """01.9: GPTModel(cfg)'s parameter count, by formula."""
    d, layers = cfg.emb_dim, cfg.n_layers
    embeddings = cfg.vocab_size * d + cfg.context_length * d
    attention = d * 3 * d + (3 * d if cfg.qkv_bias else 0) + d * d + d  # qkv, out_proj (with bias)
    feed_forward_params = d * 4 * d + 4 * d + 4 * d * d + d              # expand, project
    layer_norms = 2 * 2 * d
    head = 0 if cfg.tie_weights else cfg.vocab_size * d
    return embeddings + layers * (attention + feed_forward_params + layer_norms) + 2 * d + head


def gpt_forward(model, token_ids):
    """01.10: GPTModel's forward pass, from the model's own modules (in eval mode)."""
    positions = torch.arange(token_ids.shape[1])
    x = model.tok_emb(token_ids) + model.pos_emb(positions)
    for block in model.blocks:
        x = block(x)
    return model.out_head(model.final_norm(x))


def init_gpt_weights(model):
    """01.11: GPT-2's initialisation, in place."""
    n_layers = len(model.blocks)
    for name, parameter in model.named_parameters():
        if "norm" in name and name.endswith("weight"):
            nn.init.ones_(parameter)  # layer norms start as the identity
        elif name.endswith("bias"):
            nn.init.zeros_(parameter)
        elif name.endswith(("attn.out_proj.weight", "ff.project.weight")):
            nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))
        else:
            nn.init.normal_(parameter, mean=0.0, std=0.02)


SOLUTIONS = {
    "01.1": embed_tokens, "01.2": simple_attention, "01.3": scaled_attention, "01.4": causal_attention_weights,
    "01.5": multi_head_attention, "01.6": apply_feed_forward, "01.7": layer_norm, "01.8": block_forward,
    "01.9": count_gpt_parameters, "01.10": gpt_forward, "01.11": init_gpt_weights,
}
