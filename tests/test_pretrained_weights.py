"""03's loading path against Hugging Face's GPT-2, an independent implementation.

A randomly initialised transformers GPT2LMHeadModel is converted to OpenAI's variables (by
gpt_download's map of Hugging Face's names, not the notebook's code), written as an OpenAI TensorFlow
checkpoint, read back by gpt_download, and loaded by the notebook's own load_weights_into_gpt into the notebook's GPTModel. Both models must
then give the same logits and the same loss. Every weight, layer norms and biases included, is random,
so a wrong or missing mapping of any tensor shows.
"""

import math

import numpy as np
import pytest
import torch

import gpt2_from_scratch.weights as writer  # 03's checkpoint writer
import gpt_download

transformers = pytest.importorskip("transformers")

TINY = {"n_vocab": 500, "n_ctx": 32, "n_embd": 16, "n_head": 2, "n_layer": 2}
WIDE_CONTEXT = {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 192, "n_head": 12, "n_layer": 2}
FLOAT32_UNIT_ROUNDOFF = 2.0 ** -24


def logits_tolerance(hparams, reference_logits):
    """How far two correct float32 evaluations of one GPT-2 may disagree, here ours and Hugging Face's (other
    kernels: addmm against matmul, their attention against scaled_dot_product_attention, another order of
    summation on every CPU, BLAS and thread count). A sum of K products computed in another order differs by
    about u * sqrt(K) times the size of its terms (u = 2^-24: the rounding errors add up like a random walk);
    K is the longest sum of the model, the MLP's 4 * n_embd inputs or attention over n_ctx positions. Each
    block and the head adds such an error, which the residual stream carries to the logits at their scale:
    u * sqrt(K) * (n_layer + 1) * max|logit|, times 4 for the tail of the random walk. Measured: 0.03 of
    this on AMD EPYC with AVX-512, AVX2 and the default kernels, 1 or 2 threads (the wide model's difference
    was half the former fixed bound, 1e-5). A real mistake stays far above it: the exact GELU instead of the
    tanh form, LayerNorm's eps 1e-6, one bias 1% off move the wide model's logits by 10 to 36 times it, a
    wrong mapping by thousands of times."""
    longest_sum = max(4 * hparams["n_embd"], hparams["n_ctx"])
    return (4 * FLOAT32_UNIT_ROUNDOFF * math.sqrt(longest_sum) * (hparams["n_layer"] + 1)
            * reference_logits.abs().max().item())


def random_hf_model(hparams, seed):
    config = transformers.GPT2Config(
        vocab_size=hparams["n_vocab"], n_positions=hparams["n_ctx"], n_embd=hparams["n_embd"],
        n_head=hparams["n_head"], n_layer=hparams["n_layer"], activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5)
    model = transformers.GPT2LMHeadModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            # Layer-norm gains near 1, everything else small but nonzero (biases included).
            parameter.copy_(1 + 0.1 * noise if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))
                            else 0.1 * noise)
    return model


def hf_to_openai_params(model, hparams):
    """Hugging Face's GPT-2 state dict as OpenAI's nested params. HF keeps OpenAI's tensors under other names
    and its Conv1D weights are [in, out] like OpenAI's, so this is renaming only, by gpt_download's map of
    the Hub's names (which tests/test_safetensors_reader.py checks against 03's own conversion)."""
    variables = {}
    for name, tensor in model.state_dict().items():
        openai_name = gpt_download.openai_name_of_hf(name)
        if openai_name is not None:  # not the tied lm_head nor a mask buffer
            variables[openai_name] = tensor.detach().numpy().copy()
    return gpt_download.variables_to_params(variables, hparams)


def load_through_our_path(nb03, hf_model, hparams, models_dir):
    """HF weights -> OpenAI checkpoint on disk -> download_and_load_gpt2 -> the notebook's GPTModel."""
    writer.write_gpt2_checkpoint(hf_to_openai_params(hf_model, hparams), hparams, models_dir / "124M")
    hparams, params = gpt_download.download_and_load_gpt2("124M", models_dir, progress=False)
    model = nb03.gpt_for_checkpoint(hparams)  # as 03 loads: no random init
    nb03.load_weights_into_gpt(model, params)
    return model.eval()


@pytest.mark.parametrize("hparams", [TINY, WIDE_CONTEXT], ids=["tiny", "ctx1024-12heads"])
def test_logits_and_loss_equal_hugging_face(nb02, nb03, hparams, tmp_path):
    hf_model = random_hf_model(hparams, seed=0)
    ours = load_through_our_path(nb03, hf_model, hparams, tmp_path)
    generator = torch.Generator().manual_seed(1)
    token_ids = torch.randint(0, hparams["n_vocab"], (3, hparams["n_ctx"]), generator=generator)
    with torch.inference_mode():
        expected = hf_model(token_ids).logits
        actual = ours(token_ids)
        assert expected.abs().max() > 1.0  # the weights make a real difference to the logits
        difference = (actual - expected).abs().max().item()
        assert difference < logits_tolerance(hparams, expected), difference

        hf_loss = hf_model(token_ids, labels=token_ids).loss  # HF shifts the labels itself
        our_loss = nb02.calc_loss_batch(token_ids[:, :-1], token_ids[:, 1:], ours, "cpu")
        # Each token's cross-entropy, logsumexp(logits) - logits[target], moves by at most 2 * the largest logit
        # difference; the mean over the N tokens adds rounding of about u * log2(N) * loss (a pairwise sum),
        # times 4 as above. (A loss on the wrong targets, unshifted or shifted twice, is off by more than 0.1.)
        terms = token_ids[:, 1:].numel()
        loss_tolerance = 2 * difference + 4 * FLOAT32_UNIT_ROUNDOFF * math.log2(terms) * hf_loss.item()
        assert abs(our_loss.item() - hf_loss.item()) < loss_tolerance, (our_loss.item(), hf_loss.item())


def test_greedy_generation_matches_hugging_face(nb02, nb03, tmp_path):
    hf_model = random_hf_model(TINY, seed=2)
    ours = load_through_our_path(nb03, hf_model, TINY, tmp_path)
    prompt = torch.tensor([[1, 2, 3, 4]])
    expected = hf_model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(nb02.generate(ours, prompt, 12), expected)


def test_config_from_hparams_gives_the_presets(nb03):
    sizes = {"124M": (768, 12, 12), "355M": (1024, 24, 16), "774M": (1280, 36, 20), "1558M": (1600, 48, 25)}
    for size, (emb_dim, n_layer, n_head) in sizes.items():
        hparams = {"n_vocab": 50257, "n_ctx": 1024, "n_embd": emb_dim, "n_head": n_head, "n_layer": n_layer}
        config = nb03.config_from_hparams(hparams)
        assert config == nb03.GPTConfig.from_preset(size, drop_rate=0.0), size  # presets are named by size
        assert nb03.hparams_from_config(config) == hparams


def tiny_params(seed=0):
    return writer.random_gpt2_params(TINY, seed=seed)


def test_every_parameter_is_assigned_exactly_once(nb03):
    model = nb03.GPTModel(nb03.config_from_hparams(TINY))
    mapping = nb03.load_weights_into_gpt(model, tiny_params())
    assert sorted(mapping) == sorted(name for name, _ in model.named_parameters())
    assert len(set(mapping.values())) == len(mapping) == 4 + 12 * TINY["n_layer"]
    assert model.out_head.weight is model.tok_emb.weight


def test_a_model_for_a_checkpoint_is_tied_and_loads_like_a_built_one(nb01, nb03):
    built = nb03.GPTModel(nb03.config_from_hparams(TINY))
    nb03.load_weights_into_gpt(built, tiny_params())
    model = nb03.gpt_for_checkpoint(TINY)
    assert model.out_head.weight is model.tok_emb.weight
    assert all(parameter.device.type == "cpu" for parameter in model.parameters())
    assert nb01.count_parameters(model) == nb01.count_parameters(built)
    nb03.load_weights_into_gpt(model, tiny_params())
    for (name, ours), (_, reference) in zip(model.state_dict().items(), built.state_dict().items()):
        assert torch.equal(ours, reference), name


def test_a_wrong_shape_is_named(nb03):
    params = tiny_params()
    params["blocks"][1]["mlp"]["c_fc"]["w"] = params["blocks"][1]["mlp"]["c_fc"]["w"][:, :-1]
    with pytest.raises(ValueError, match=r"h1/mlp/c_fc/w.*blocks\.1\.ff\.expand\.weight"):
        nb03.load_weights_into_gpt(nb03.GPTModel(nb03.config_from_hparams(TINY)), params)


def test_a_model_parameter_without_a_tensor_is_reported(nb03):
    class WithExtra(nb03.GPTModel):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.extra_scale = torch.nn.Parameter(torch.ones(1))

    with pytest.raises(ValueError, match="extra_scale"):
        nb03.load_weights_into_gpt(WithExtra(nb03.config_from_hparams(TINY)), tiny_params())


def test_untied_or_wrong_depth_models_are_refused(nb03):
    untied = nb03.GPTModel(nb03.GPTConfig(**{**vars(nb03.config_from_hparams(TINY)), "tie_weights": False}))
    with pytest.raises(ValueError, match="tie_weights=True"):
        nb03.load_weights_into_gpt(untied, tiny_params())
    deeper = nb03.GPTModel(nb03.GPTConfig(**{**vars(nb03.config_from_hparams(TINY)), "n_layers": 3}))
    with pytest.raises(ValueError, match="2 blocks, the model 3"):
        nb03.load_weights_into_gpt(deeper, tiny_params())


def test_export_is_the_inverse_of_loading(nb03):
    params = tiny_params(seed=5)
    model = nb03.GPTModel(nb03.config_from_hparams(TINY))
    nb03.load_weights_into_gpt(model, params)
    exported = writer.params_to_variables(nb03.gpt_to_openai_params(model), TINY)
    for name, array in writer.params_to_variables(params, TINY).items():
        assert np.array_equal(exported[name], array), name


@pytest.mark.parametrize("damage, message", [
    (lambda params: params["blocks"][1]["mlp"]["c_proj"].pop("b"), r"h1/mlp/c_proj/b is missing"),
    (lambda params: params.pop("g"), r"ln_f/g is missing"),
    (lambda params: params["blocks"][1]["mlp"]["c_proj"].update(w=params["blocks"][1]["mlp"]["c_proj"]["w"][:-1]),
     r"h1/mlp/c_proj/w: shape"),
])
def test_loading_is_all_or_nothing(nb03, damage, message):
    torch.manual_seed(0)
    model = nb03.GPTModel(nb03.config_from_hparams(TINY))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    params = tiny_params(seed=4)
    damage(params)  # the last tensors to be copied: everything before them would already be overwritten
    with pytest.raises(ValueError, match=message):
        nb03.load_weights_into_gpt(model, params)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items()), "the model changed"
