"""01_architecture's components, tested on the notebook's own definitions."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn


@pytest.fixture
def small_config(nb01):
    return nb01.GPTConfig(vocab_size=97, context_length=16, emb_dim=32, n_heads=4, n_layers=3, drop_rate=0.0)


# --- data ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_tokens, max_length, stride", [(11, 4, 4), (11, 4, 1), (50, 7, 3), (5, 4, 9)])
def test_sliding_windows_count_and_one_token_shift(nb01, n_tokens, max_length, stride):
    token_ids = list(range(100, 100 + n_tokens))
    dataset = nb01.SlidingWindowDataset(token_ids, max_length, stride)
    assert len(dataset) == (n_tokens - 1 - max_length) // stride + 1
    for index in range(len(dataset)):
        inputs, targets = dataset[index]
        start = index * stride
        assert inputs.tolist() == token_ids[start : start + max_length]
        assert targets.tolist() == token_ids[start + 1 : start + max_length + 1]
    # The last window still has a target for its last token, and no window is left out.
    last_start = (len(dataset) - 1) * stride
    assert last_start + max_length <= n_tokens - 1 < last_start + stride + max_length


@pytest.mark.parametrize("max_length, stride, message", [(10, 1, "too few"), (0, 1, "at least 1"), (4, 0, "at least 1")])
def test_sliding_window_rejects_bad_arguments(nb01, max_length, stride, message):
    with pytest.raises(ValueError, match=message):
        nb01.SlidingWindowDataset(list(range(10)), max_length, stride)


def test_dataloader_batches(nb01):
    class CharTokenizer:  # one token per character, so counts are easy to reason about
        def encode(self, text):
            return [ord(character) for character in text]

    loader = nb01.create_dataloader("abcdefghijklmnopq", CharTokenizer(), batch_size=2, max_length=4,
                                    stride=4, shuffle=False, drop_last=False)
    batches = list(loader)
    assert [tuple(inputs.shape) for inputs, _ in batches] == [(2, 4), (2, 4)]
    assert bytes(batches[1][1][1].tolist()).decode() == "nopq"


# --- attention ----------------------------------------------------------------------------------

@pytest.mark.parametrize("emb_dim, n_heads, qkv_bias", [(8, 1, False), (12, 3, True), (64, 8, True)])
def test_fused_attention_equals_the_explicit_one(nb01, emb_dim, n_heads, qkv_bias):
    torch.manual_seed(0)
    explicit = nb01.MultiHeadAttention(emb_dim, emb_dim, context_length=10, drop_rate=0.0,
                                       n_heads=n_heads, qkv_bias=qkv_bias)
    with torch.no_grad():  # non-zero biases, so that copying them is tested too
        for parameter in explicit.parameters():
            parameter.normal_(std=0.1)
    fused = nb01.load_mha_into_fused(explicit, nb01.CausalSelfAttention(emb_dim, n_heads, qkv_bias=qkv_bias))
    x = torch.randn(3, 10, emb_dim)
    torch.testing.assert_close(fused(x), explicit(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused(x[:, :4]), explicit(x[:, :4]), rtol=1e-5, atol=1e-5)  # shorter input


def test_attention_is_causal(nb01):
    torch.manual_seed(0)
    attention = nb01.CausalSelfAttention(16, 4, qkv_bias=True)
    x = torch.randn(2, 7, 16)
    changed = x.clone()
    changed[:, 5:] = torch.randn(2, 2, 16)
    torch.testing.assert_close(attention(changed)[:, :5], attention(x)[:, :5])
    assert not torch.allclose(attention(changed)[:, 5], attention(x)[:, 5])


def test_attention_dropout_only_in_training(nb01):
    torch.manual_seed(0)
    attention = nb01.CausalSelfAttention(16, 4, drop_rate=0.5)
    x = torch.randn(2, 7, 16)
    attention.train()
    assert not torch.allclose(attention(x), attention(x))
    attention.eval()
    torch.testing.assert_close(attention(x), attention(x))


def test_masks_are_buffers_not_weights(nb01):
    for module in (nb01.CausalAttention(3, 2, 6, 0.0), nb01.MultiHeadAttention(4, 4, 6, 0.0, 2)):
        assert "causal_mask" in dict(module.named_buffers())
        assert "causal_mask" not in module.state_dict()


def test_attention_weights_reproduce_the_attention_output(nb01):
    torch.manual_seed(0)
    attention = nb01.CausalSelfAttention(16, 4, qkv_bias=True).eval()
    x = torch.randn(2, 6, 16)
    weights = nb01.attention_weights(attention, x)
    assert weights.shape == (2, 4, 6, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 6))
    assert torch.all(weights.triu(diagonal=1) == 0)
    values = attention.split_heads(attention.qkv(x).split(16, dim=-1)[2])
    rebuilt = attention.out_proj((weights @ values).transpose(1, 2).flatten(2))
    torch.testing.assert_close(rebuilt, attention(x))


# --- building blocks ----------------------------------------------------------------------------

def test_layer_norm_matches_torch_and_uses_biased_variance(nb01):
    torch.manual_seed(0)
    ours, reference = nb01.LayerNorm(10), nn.LayerNorm(10, eps=1e-5)
    with torch.no_grad():
        for parameter in (ours.weight, ours.bias):
            parameter.normal_()
        reference.load_state_dict(ours.state_dict())
    x = 5 * torch.randn(4, 3, 10) + 2
    torch.testing.assert_close(ours(x), reference(x))
    assert ours.eps == 1e-5


def test_gelu_is_the_tanh_approximation(nb01):
    x = torch.linspace(-6, 6, 1001)
    # Tight on purpose: a wrong constant (0.0447 for 0.044715) is off by 9e-6, the right one by 2e-7.
    torch.testing.assert_close(nb01.GELU()(x), F.gelu(x, approximate="tanh"), rtol=0, atol=1e-6)
    assert not torch.allclose(nb01.GELU()(x), F.gelu(x), atol=1e-5)  # and not the exact erf form


def test_feed_forward_expands_four_times(nb01):
    feed_forward = nb01.FeedForward(8)
    assert (feed_forward.expand.out_features, feed_forward.project.in_features) == (32, 32)
    assert feed_forward(torch.randn(2, 3, 8)).shape == (2, 3, 8)


def test_shortcuts_keep_early_gradients(nb01):
    sample = torch.tensor([[1.0, 0.0, -1.0, 0.5]])
    first_layer = {}
    for use_shortcut in (False, True):
        torch.manual_seed(7)
        first_layer[use_shortcut] = nb01.weight_gradients(nb01.DeepStack(4, 8, use_shortcut), sample)[0]
    assert first_layer[True] > 100 * first_layer[False]


def test_transformer_block_is_pre_ln_with_residuals(nb01, small_config):
    torch.manual_seed(0)
    block = nb01.TransformerBlock(small_config).eval()
    x = torch.randn(2, 5, 32)
    expected = x + block.attn(block.norm1(x))
    expected = expected + block.ff(block.norm2(expected))
    torch.testing.assert_close(block(x), expected)


# --- configuration and model --------------------------------------------------------------------

def test_presets_and_validation(nb01):
    assert nb01.GPTConfig.from_preset("1558M").emb_dim == 1600
    assert nb01.GPTConfig.from_preset("355M", drop_rate=0.0).drop_rate == 0.0
    with pytest.raises(ValueError, match="124M, 355M, 774M, 1558M"):
        nb01.GPTConfig.from_preset("2000M")
    with pytest.raises(ValueError, match="divisible"):
        nb01.GPTConfig(emb_dim=100, n_heads=12)
    with pytest.raises(ValueError, match="drop_rate"):
        nb01.GPTConfig(drop_rate=1.0)
    with pytest.raises(ValueError, match="n_layers"):
        nb01.GPTConfig(n_layers=0)


def test_parameter_counts_of_gpt2_small(nb01):
    small = nb01.GPTConfig.from_preset
    assert nb01.parameter_count(small("124M", qkv_bias=False, tie_weights=False)) == 163_009_536
    assert nb01.parameter_count(small("124M", qkv_bias=False, tie_weights=True)) == 124_412_160


@pytest.mark.parametrize("preset", ["124M", "355M", "774M", "1558M"])
def test_parameter_count_equals_hugging_face(nb01, preset):
    transformers = pytest.importorskip("transformers")
    cfg = nb01.GPTConfig.from_preset(preset)
    hf_config = transformers.GPT2Config(n_embd=cfg.emb_dim, n_layer=cfg.n_layers, n_head=cfg.n_heads,
                                        n_positions=cfg.context_length, vocab_size=cfg.vocab_size)
    with torch.device("meta"):
        hf_model = transformers.GPT2LMHeadModel(hf_config)
    assert nb01.parameter_count(cfg) == sum(p.numel() for p in hf_model.parameters())


def test_gpt2_initialisation(nb01):
    torch.manual_seed(0)
    cfg = nb01.GPTConfig(vocab_size=1000, context_length=64, emb_dim=256, n_heads=4, n_layers=6)
    model = nb01.GPTModel(cfg)
    residual_std = 0.02 / math.sqrt(2 * cfg.n_layers)
    for name, parameter in model.named_parameters():
        if name.endswith(("attn.out_proj.weight", "ff.project.weight")):
            assert parameter.std().item() == pytest.approx(residual_std, rel=0.05), name
        elif name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "final_norm.weight":
            assert torch.all(parameter == 1), name
        elif name.endswith(".bias"):
            assert torch.all(parameter == 0), name
        else:
            assert parameter.std().item() == pytest.approx(0.02, rel=0.05), name
            assert abs(parameter.mean().item()) < 0.002, name


def test_weight_tying(nb01, small_config):
    tied = nb01.GPTModel(small_config)
    assert tied.out_head.weight is tied.tok_emb.weight
    untied_config = nb01.GPTConfig(**{**vars(small_config), "tie_weights": False})
    untied = nb01.GPTModel(untied_config)
    assert untied.out_head.weight is not untied.tok_emb.weight
    extra = small_config.vocab_size * small_config.emb_dim
    assert nb01.count_parameters(untied) - nb01.count_parameters(tied) == extra


def test_model_output_shape_and_causality(nb01, small_config):
    torch.manual_seed(0)
    model = nb01.GPTModel(small_config).eval()
    token_ids = torch.randint(0, 97, (2, 9))
    logits = model(token_ids)
    assert logits.shape == (2, 9, 97)
    changed = token_ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 97
    torch.testing.assert_close(model(changed)[:, :-1], logits[:, :-1])


def test_model_rejects_input_longer_than_its_context(nb01, small_config):
    model = nb01.GPTModel(small_config)
    with pytest.raises(ValueError, match="context length"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_untrained_model_is_near_uniform(nb01, small_config):
    torch.manual_seed(0)
    model = nb01.GPTModel(small_config).eval()
    token_ids = torch.randint(0, 97, (4, 16))
    loss = F.cross_entropy(model(token_ids)[:, :-1].flatten(0, 1), token_ids[:, 1:].flatten())
    assert loss.item() == pytest.approx(math.log(97), abs=0.1)


# --- generation ---------------------------------------------------------------------------------

def test_greedy_generation_crops_to_the_context(nb01, small_config):
    torch.manual_seed(0)
    model = nb01.GPTModel(small_config).eval()
    prompt = torch.randint(0, 97, (2, 5))
    generated = nb01.generate_greedy(model, prompt, max_new_tokens=20)
    assert generated.shape == (2, 25)
    assert torch.equal(generated[:, :5], prompt)
    with torch.no_grad():  # each new token is the argmax given the last 16 tokens before it
        for position in range(5, 25):
            context = generated[:, max(0, position - 16) : position]
            assert torch.equal(generated[:, position], model(context)[:, -1].argmax(-1))


def test_greedy_generation_with_a_shorter_context_argument(nb01, small_config):
    torch.manual_seed(0)
    model = nb01.GPTModel(small_config).eval()
    prompt = torch.randint(0, 97, (1, 6))
    generated = nb01.generate_greedy(model, prompt, max_new_tokens=3, context_length=2)
    with torch.no_grad():
        assert generated[0, 6] == model(prompt[:, -2:])[0, -1].argmax()


def test_greedy_generation_rejects_an_empty_prompt(nb01, small_config):
    with pytest.raises(ValueError, match="empty"):
        nb01.generate_greedy(nb01.GPTModel(small_config), torch.zeros(1, 0, dtype=torch.long), 3)
