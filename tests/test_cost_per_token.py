"""01's flops_per_token and kv_cache_bytes_per_token, against what PyTorch counts and what 02's cache allocates."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

LINEAR_OPS = ("aten.mm", "aten.addmm")  # what an nn.Linear runs (attention's fused kernel is not counted on a CPU)


def tiny_config(nb01, tie_weights):
    return nb01.GPTConfig(vocab_size=97, context_length=16, emb_dim=32, n_heads=4, n_layers=3, drop_rate=0.0,
                          qkv_bias=True, tie_weights=tie_weights)


def linear_flops(counter):
    return sum(count for op, count in counter.get_flop_counts()["Global"].items() if str(op) in LINEAR_OPS)


@pytest.mark.parametrize("tie_weights", [True, False])
def test_the_weights_term_is_what_the_linear_layers_compute(nb01, tie_weights):
    cfg = tiny_config(nb01, tie_weights)
    torch.manual_seed(0)
    model = nb01.GPTModel(cfg)
    batch, n_tokens = 3, 16
    attention_term = 4 * cfg.n_layers * n_tokens * cfg.emb_dim
    token_ids = torch.randint(0, cfg.vocab_size, (batch, n_tokens))
    with FlopCounterMode(display=False) as forward:
        logits = model(token_ids)
    expected = nb01.flops_per_token(cfg, n_tokens) - attention_term
    assert linear_flops(forward) == batch * n_tokens * expected
    with FlopCounterMode(display=False) as backward:
        logits.sum().backward()
    # The backward pass: two products for each of the forward pass's (the gradients of its input and of its
    # weight; every linear layer's input depends on the embeddings, which are trained), so 3x in all
    assert linear_flops(forward) + linear_flops(backward) == 3 * batch * n_tokens * expected
    assert nb01.flops_per_token(cfg, n_tokens, training=True) == 3 * nb01.flops_per_token(cfg, n_tokens)


def test_the_attention_term_is_what_written_out_attention_computes(nb01):
    attention = nb01.MultiHeadAttention(d_in=48, d_out=48, context_length=32, drop_rate=0.0, n_heads=6).eval()
    n_tokens = 32
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        attention(torch.randn(2, n_tokens, 48))
    weights = sum(module.weight.numel() for module in attention.modules() if isinstance(module, torch.nn.Linear))
    assert counter.get_total_flops() == 2 * n_tokens * (2 * weights + 4 * n_tokens * 48)


@pytest.mark.parametrize("dtype, bytes_per_value", [(torch.float32, 4), (torch.bfloat16, 2)])
def test_the_cache_bytes_are_what_02s_cache_allocates(nb01, nb02, dtype, bytes_per_value):
    cfg = tiny_config(nb01, True)
    model = nb01.GPTModel(cfg)
    cache = nb02.KVCache(model, batch=1, max_tokens=11, dtype=dtype, device="cpu")
    allocated = cache.keys.nbytes + cache.values.nbytes
    assert allocated == 11 * nb01.kv_cache_bytes_per_token(cfg, bytes_per_value)
